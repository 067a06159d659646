"""``sweep.pack=K``: a grid's points that differ only in ``trainer.seed`` trained K at a time, as K towers
of one model in one process and one ``fit`` (fashion_lab/run/packed.py), each recorded as its own run.

``fashion-lab sweep`` turns the seed dimension into ``sweep.pack_seeds=choice([0,1],[2])`` (one job per pack);
the campaign sees the same per-seed points as without packing (``expand``), and the job
(``sweeps.job.run_pack``) trains its seeds and hands back one ``JobResult`` per seed.
"""

from __future__ import annotations

from pathlib import Path

from fashion_lab.config import ConfigError, override_key
from fashion_lab.sweeps import grid as sweep

KEY = "sweep.pack_seeds"


def pack_size(path: Path, overrides: list[str]) -> int:
    """``sweep.pack`` as the sweep will see it, refused in one line where it can't apply."""
    text = sweep.setting(path, overrides, "sweep.pack", 1)
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"sweep.pack={text}: give an integer >= 1 (seeds trained together as towers of one model)")
    if int(text) > 1:
        for key in ("sweep.until_sure", "sweep.race"):
            if sweep.setting(path, overrides, key, False).lower() == "true":
                raise ConfigError(f"sweep.pack={text} with {key}=true is not supported: give sweep.pack=1")
        if sweep.strategy(path, overrides) != "grid":
            raise ConfigError(f"sweep.pack={text} packs a grid's seeds; this sweep is a "
                              f"{sweep.strategy(path, overrides)} search: give sweep.pack=1")
    return int(text)


def with_packs(path: Path, overrides: list[str]) -> list[str]:
    """The overrides (after ``grid.with_seeds``) with the seed dimension cut into packs of ``sweep.pack``:
    ``trainer.seed=0,1,2`` and K=2 -> ``sweep.pack_seeds=choice([0,1],[2])``."""
    k = pack_size(path, overrides)
    seeds = sweep.dimensions(sweep._params(path_node(path)), overrides).get("trainer.seed")
    if k == 1 or seeds is None or not seeds.is_sweep_override():
        return overrides
    values = [int(v) for v in seeds.sweep_string_iterator()]
    packs = ",".join("[" + ",".join(map(str, values[i:i + k])) + "]" for i in range(0, len(values), k))
    rest = [o for o in overrides if override_key(o) != "trainer.seed"]
    # trainer.seed as a plain value replaces a sweep file's seed dimension; each tower sets its own seed
    return rest + [f"trainer.seed={values[0]}", f"{KEY}=choice({packs})"]  # choice(): a sweep even of one pack


def path_node(path: Path):
    from omegaconf import OmegaConf

    return OmegaConf.load(path)


def expand(points: list[list[str]], keys: list[str], config) -> tuple[list[list[str]], list[str]]:
    """The campaign's view: each packed job's point as its per-seed points, ``trainer.seed`` as the key."""
    check_packed(config, keys)
    if KEY not in keys:
        return points, keys
    out = [one for point in points for one in per_seed(point)]
    return out, [("trainer.seed" if k == KEY else k) for k in keys]


def per_seed(overrides: list[str]) -> list[list[str]]:
    """A packed job's overrides as each seed's own: ``sweep.pack_seeds=[0,1]`` -> ``trainer.seed=0``, ``=1``
    in its place (the order a single run's overrides have), without the pack's plain ``trainer.seed``."""
    packed = next((o for o in overrides if override_key(o) == KEY), None)
    if packed is None:
        return [list(overrides)]
    seeds = [s.strip() for s in packed.split("=", 1)[1].strip("[] ").split(",") if s.strip()]
    return [[f"trainer.seed={s}" if o == packed else o for o in overrides if override_key(o) != "trainer.seed"]
            for s in seeds]


def check_packed(config, keys: list[str]) -> None:
    """A bare multirun with sweep.pack would train its points one by one, silently: refused."""
    if int(config.sweep.pack) > 1 and KEY not in keys:
        raise ConfigError(f"sweep.pack={config.sweep.pack} is applied by `fashion-lab sweep NAME`; with train -m "
                          f"give the packs as '{KEY}=choice([0,1],[2,3])'")
    if int(config.sweep.pack) < 1:
        raise ConfigError(f"sweep.pack={config.sweep.pack}: give an integer >= 1")
    if KEY in keys:  # one fit trains every tower: nothing may stop or log one tower on its own
        from fashion_lab.run.packed import check_settings

        check_settings(config, int(config.sweep.pack))
