"""``hydra/sweeper=until_sure`` (``fashion-lab sweep NAME sweep.until_sure=true``).

Runs every grid point over ``sweep.seeds`` seeds (at least 2), then, round after round, adds one seed to
the cells of the comparisons with the reference level that are still undecided (their 95 % interval on
matched pairs spans 0, on ``report.metric``: validation accuracy, so the test set stays unseen by the
decision). It stops when every comparison excludes 0 or when the cells involved reach ``sweep.max_seeds``.
Batches go through whatever launcher is configured; decisions read the jobs' return values
(``fashion_lab.sweeps.job.run_job``), so the sweep's parent run and summary work as for any grid.
"""


import logging
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


def finished_rows(batch: list[list[str]], results: list, keys: list[str], metric: str) -> list[dict]:
    """One row (swept values, seed, metric) per point whose job FINISHED (run_job never raises)."""
    from fashion_lab.record.results import typed

    rows = []
    for point, result in zip(batch, results):
        value = result.return_value
        if value is not None and value.status == "FINISHED":
            values = dict(line.split("=", 1) for line in point)
            rows.append({**{k: typed(values[k]) for k in keys}, "seed": int(values["trainer.seed"]),
                         metric: value.metrics.get(metric)})
    return rows


@dataclass
class UntilSureSweeperConf:
    _target_: str = "hydra_plugins.fashion_lab_until_sure.until_sure_sweeper.UntilSureSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="until_sure", node=UntilSureSweeperConf,
                             provider="fashion_lab")


def first_seeds(override, default_seed: int, seeds: int) -> list[int]:
    """The seeds every point runs first: a swept ``trainer.seed=5,6`` as given (at least two are needed
    for an interval), else ``sweep.seeds`` seeds (at least 2) counting up from ``trainer.seed``."""
    if override is not None and override.is_sweep_override():
        given = [int(v) for v in override.sweep_string_iterator()]
        return given + [max(given) + 1 + i for i in range(max(0, 2 - len(given)))]
    first = int(override.value()) if override is not None else default_seed
    return [first + i for i in range(max(2, seeds))]


def next_seed(seeds: list[int], run: int) -> int:
    """The seed of a point's next round, after ``run`` seeds: past the first ones, counting up."""
    return seeds[run] if run < len(seeds) else max(seeds) + 1 + run - len(seeds)


class UntilSureSweeper(BasicSweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[Dict[str, str]] = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)

    def _launch(self, batch: list[list[str]], job: int) -> list:
        from fashion_lab.sweeps.grid import launch_in_batches

        return launch_in_batches(self.launcher, batch, job, self.max_batch_size)

    def sweep(self, arguments: List[str]) -> Any:
        from fashion_lab.sweeps.campaign import fashion_labs_own
        from fashion_lab.config import flatten, without_hydra
        from fashion_lab.analysis.answers import base_level, undecided_cells

        fashion_labs_own(self.config, "until_sure", "fashion-lab sweep NAME sweep.until_sure=true")
        cfg = self.config
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(self._parse_config() + list(arguments))
        dims = {o.get_key_element(): o for o in overrides}  # a later key wins, like fashion_lab.sweeps.grid.dimensions
        seeds = first_seeds(dims.pop("trainer.seed", None), int(cfg.trainer.seed), int(cfg.sweep.seeds))
        keys = [k for k, o in dims.items() if o.is_sweep_override()]
        grid = self.split_arguments(list(dims.values()), None)[0]
        limit = max(len(seeds), int(cfg.sweep.max_seeds))
        metric = str(cfg.report.metric)
        defaults = flatten(without_hydra(cfg))

        def cell(point: list[str]) -> tuple:
            values = dict(line.split("=", 1) for line in point)
            return tuple(values[k] for k in keys)

        Path(cfg.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)  # like the basic sweeper: the sweep's config
        OmegaConf.save(cfg, Path(cfg.hydra.sweep.dir) / "multirun.yaml")
        seeds_run = {cell(p): len(seeds) for p in grid}
        rows, returns, job = [], [], 0
        batch = [p + [f"trainer.seed={seed}"] for p in grid for seed in seeds]
        while batch:
            self.validate_batch_is_legal(batch)
            results = self._launch(batch, job)
            job += len(batch)
            returns.append(results)
            rows += finished_rows(batch, results, keys, metric)
            import pandas as pd

            frame = pd.DataFrame(rows)
            references = {k: base_level(frame, k, defaults) for k in keys} if len(frame) else {}
            todo = undecided_cells(rows, keys, references, metric) if references else set()
            grow = [p for p in grid if cell(p) in todo and seeds_run[cell(p)] < limit]
            if not todo:
                log.info(f"until_sure: every comparison with the reference excludes 0 on {metric}: done")
            elif not grow:
                log.info(f"until_sure: {len(todo)} cells still undecided on {metric}, but they ran "
                         f"sweep.max_seeds={limit} seeds: stopping")
            else:
                log.info(f"until_sure: {len(todo)} cells undecided on {metric}: one more seed for {len(grow)}")
            batch = [p + [f"trainer.seed={next_seed(seeds, seeds_run[cell(p)])}"] for p in grow]
            for p in grow:
                seeds_run[cell(p)] += 1
        return returns
