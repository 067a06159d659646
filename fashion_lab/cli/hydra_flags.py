"""Hydra's own command-line flags (--cfg, --info, ...), told apart from overrides, so every command passes
them to Hydra as ``fashion-lab train`` does."""

from __future__ import annotations

# Hydra's own flags, with how many values each takes (--info's is optional): passed through untouched.
HYDRA_FLAGS = {"--cfg": 1, "-c": 1, "--package": 1, "-p": 1, "--resolve": 0, "--hydra-help": 0,
               "--info": "?", "-i": "?", "--config-path": 1, "-cp": 1, "--config-name": 1, "-cn": 1,
               "--config-dir": 1, "-cd": 1, "--experimental-rerun": 1}
INFO_TOPICS = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")
SHOW_FLAGS = ("--cfg", "-c", "--info", "-i", "--hydra-help")  # Hydra shows, runs nothing; not with -m


def shows_only(flags: list[str]) -> bool:
    return any(f.split("=", 1)[0] in SHOW_FLAGS for f in flags)


def split_hydra_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra's flags with their values, the rest): ``tune --cfg job`` and ``sweep NAME --info plugins``
    reach Hydra as they would on ``train``, and never the override parser."""
    flags, rest, i = [], [], 0
    while i < len(argv):
        arg, takes = argv[i], HYDRA_FLAGS.get(argv[i].split("=", 1)[0])
        if takes is None or "=" in arg:
            (rest if takes is None else flags).append(arg)
            i += 1
            continue
        width = 1 if takes == "?" and i + 1 < len(argv) and argv[i + 1] in INFO_TOPICS else (
            0 if takes == "?" else takes)
        flags += argv[i:i + 1 + width]
        i += 1 + width
    return flags, rest
