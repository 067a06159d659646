"""The sweep-file guard: a sweep file is data, so it may say only what a sweep needs.

A sweep file may come from a colleague. Hydra would instantiate any ``_target_`` in it, run its
``hydra.callbacks``, open any file its ``hydra.job_logging`` names and write where ``hydra.run.dir``
points. So the guard is a set of allow-lists, never a deny-list: the ``_target_`` names
fashion-lab's own configs need, the few ``hydra:`` keys a sweep sets, the config groups its
``defaults`` may choose, and no key that only the command line may give (``tuner.overwrite``).
"""

from __future__ import annotations

from typing import Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

# The only _target_ fashion-lab's configs name (conf/config.yaml's hydra.callbacks.campaign), by exact name:
# a prefix test would pass fashion_lab.config.os.system or any fashion-lab function that deletes files.
OWN_TARGETS = ("fashion_lab.sweeps.campaign.Campaign",)
# The hydra: keys a sweep file may set (with everything below them): what it varies, and how many jobs at once.
HYDRA_KEYS = ("hydra.sweeper.params", "hydra.launcher.n_jobs")
# Hydra's own config groups a sweep file's defaults may choose (e.g. override /hydra/launcher: joblib).
HYDRA_GROUPS = ("hydra/launcher", "hydra/sweeper")
# Keys taken only from the command line: a file must never be able to delete a folder.
COMMAND_LINE_ONLY = ("tuner.overwrite",)


def _items(node) -> list:
    if isinstance(node, DictConfig):
        return [(str(k), node._get_node(k)) for k in node.keys()]
    if isinstance(node, ListConfig):
        return [(str(i), node._get_node(i)) for i in range(len(node))]
    return []


def sweep_code(node, prefix: str = "") -> Optional[str]:
    """The first ``_target_`` in a sweep file that is not one of ``OWN_TARGETS``, as a message; else None."""
    for key, child in _items(node):
        dotted = f"{prefix}{key}"
        if key == "_target_" and str(child._value()) not in OWN_TARGETS:
            return (f"{dotted}={child._value()!r} is not allowed: a sweep file may name no code to run "
                    f"(_target_, hydra.callbacks) apart from fashion-lab's own ({', '.join(OWN_TARGETS)})")
        problem = sweep_code(child, dotted + ".")
        if problem:
            return problem
    return None


def hydra_problem(node, prefix: str = "hydra") -> Optional[str]:
    """The first key under ``hydra:`` that is not on ``HYDRA_KEYS``, as a message; else None."""
    allowed = f"a sweep file may set only {', '.join(HYDRA_KEYS)} under hydra: (and choose {', '.join(HYDRA_GROUPS)} in defaults)"
    if not isinstance(node, DictConfig):
        return f"{prefix}={node._value()!r} is not allowed: {allowed}"
    for key, child in _items(node):
        dotted = f"{prefix}.{key}"
        if dotted in HYDRA_KEYS:
            continue
        if not any(a.startswith(dotted + ".") for a in HYDRA_KEYS):
            return f"{dotted} is not allowed: {allowed}"
        problem = hydra_problem(child, dotted)
        if problem:
            return problem
    return None


def defaults_problem(node, groups: tuple[str, ...]) -> Optional[str]:
    """The first ``defaults`` entry that chooses anything but a config group of conf/ or ``HYDRA_GROUPS``."""
    if node is None:
        return None
    if not isinstance(node, ListConfig):
        return f"defaults={node._value()!r} is not allowed: a list of group choices"
    allowed = f"choose only config groups ({', '.join(groups)}, {', '.join(HYDRA_GROUPS)})"
    for i, entry in _items(node):
        if isinstance(entry, DictConfig) and len(entry) == 1:
            (key, value), = entry.items()
            group = str(key).removeprefix("override ").strip().lstrip("/")
            if (group in groups or group in HYDRA_GROUPS) and isinstance(value, (str, type(None))):
                continue
            return f"defaults[{i}]={key}: {value} is not allowed: a sweep file's defaults may {allowed}"
        if entry._value() != "_self_":
            return f"defaults[{i}]={entry._value()!r} is not allowed: a sweep file's defaults may {allowed}"
    return None


def command_line_only(node) -> Optional[str]:
    """A key only the command line may set (``COMMAND_LINE_ONLY``), set or swept by the file; else None."""
    swept = OmegaConf.select(node, "hydra.sweeper.params", default=None, throw_on_resolution_failure=False)
    for key in COMMAND_LINE_ONLY:
        value = OmegaConf.select(node, key, default=None, throw_on_resolution_failure=False)
        if value is None and isinstance(swept, DictConfig):
            value = swept.get(key)
        if value is not None:
            return (f"{key}={value!r} is not allowed in a sweep file: it deletes the saved search, so it is "
                    f"taken only from the command line ({key}=true)")
    return None


def sweep_problem(node, groups: tuple[str, ...]) -> Optional[str]:
    """Why a loaded sweep file is refused (the first reason, naming its key), or None when it is data only."""
    if not isinstance(node, DictConfig):
        return "not a mapping of keys: a sweep file is a YAML mapping (hydra.sweeper.params, sweep, trainer, ...)"
    return (sweep_code(node)  # first: its message names the code (hydra.callbacks.x._target_='os.system')
            or (hydra_problem(node._get_node("hydra")) if "hydra" in node else None)
            or defaults_problem(node._get_node("defaults") if "defaults" in node else None, groups)
            or command_line_only(node))
