"""``hydra/sweeper=race`` (``fashion-lab sweep NAME sweep.race=true``).

Trains every arm (grid cell) x seed to the first of ``sweep.rungs`` (clipped to ``trainer.epochs``, which is
always the last rung), applies the stopping rule (fashion_lab.analysis.racing: an arm stops when it is worse
than another on matched seeds by more than their noise allows, judged on the validation accuracy at the
rung's epoch, so the test set never steers it), then continues only the surviving arms, each run from its
previous rung's recorded weights (``sweep.continues_run``: the weights Hyperband's rounds continue from,
read from the record, so any launcher works). A sibling of until_sure rather than a mode of it: its rounds
add epochs to fewer arms, until_sure's add seeds to undecided cells; one decision per sweeper.
Every run is tagged with its rung (fashion_lab.analysis.race_record); a stopped arm's runs with where and why.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from hydra_plugins.fashion_lab_until_sure.until_sure_sweeper import first_seeds

log = logging.getLogger(__name__)


@dataclass
class RaceSweeperConf:
    _target_: str = "hydra_plugins.fashion_lab_race.race_sweeper.RaceSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="race", node=RaceSweeperConf, provider="fashion_lab")


def arm_label(arm: list[str], keys: list[str]) -> str:
    """"learning_rate=0.01": the arm's swept values, as the race's lines name it."""
    values = dict(line.split("=", 1) for line in arm)
    return " ".join(f"{k.rsplit('.', 1)[-1]}={values[k]}" for k in keys if k in values) or "base"


class RaceSweeper(BasicSweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[Dict[str, str]] = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)

    def _launch(self, batch: list[list[str]], job: int) -> list:
        self.validate_batch_is_legal(batch)
        from fashion_lab.sweeps.grid import launch_in_batches

        return launch_in_batches(self.launcher, batch, job, self.max_batch_size)

    def sweep(self, arguments: List[str]) -> Any:
        from fashion_lab.analysis import racing
        from fashion_lab.sweeps.campaign import fashion_labs_own

        fashion_labs_own(self.config, "race", "fashion-lab sweep NAME sweep.race=true")
        cfg = self.config
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        dims = {o.get_key_element(): o for o in parser.parse_overrides(self._parse_config() + list(arguments))}
        seeds = first_seeds(dims.pop("trainer.seed", None), int(cfg.trainer.seed), int(cfg.sweep.seeds))
        keys = [k for k, o in dims.items() if o.is_sweep_override()]
        arms = self.split_arguments(list(dims.values()), None)[0]
        labels = [arm_label(arm, keys) for arm in arms]
        epochs = racing.rung_epochs(int(cfg.trainer.epochs), list(cfg.sweep.rungs))
        sweep_dir = Path(cfg.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, sweep_dir / "multirun.yaml")
        alive, last, returns, job = list(range(len(arms))), {}, [], 0
        for rung, epoch in enumerate(epochs, start=1):
            pairs = [(a, s) for a in alive for s in seeds if rung == 1 or (a, s) in last]
            batch = [arms[a] + [f"trainer.seed={s}", f"trainer.epochs={epoch}"]
                     + ([f"sweep.continues_run={last[(a, s)]}"] if rung > 1 else []) for a, s in pairs]
            results = self._launch(batch, job)
            job += len(batch)
            returns.append(results)
            last, scores = self._record(cfg, pairs, results, rung, len(epochs), epoch)
            if rung == len(epochs):
                break
            frame = {labels[a]: {s: scores.get((a, s)) for s in seeds} for a in alive}
            import pandas as pd

            stops = racing.stops(pd.DataFrame(frame, dtype=float), rung, epoch, len(arms), len(epochs) - 1)
            stopped = {s.arm: s for s in stops}
            for a in alive:
                if (stop := stopped.get(labels[a])) is not None:
                    self._tag(cfg, [last[(a, s)] for s in seeds if (a, s) in last], stop)
                    log.info(f"race: {stop.arm} stopped at rung {rung} (epoch {epoch}): {stop.evidence()}")
            alive = [a for a in alive if labels[a] not in stopped]
            log.info(f"race: rung {rung} (epoch {epoch}): {len(alive)} of {len(arms)} arms continue")
        return returns

    def _record(self, cfg, pairs, results, rung: int, rungs: int, epoch: int) -> tuple[dict, dict]:
        """Tag each finished run with its rung; its run id (what the next rung continues) and its
        validation accuracy at this epoch (the last epoch's: a rung's run ends at the rung)."""
        from fashion_lab.record import tracking
        from fashion_lab.analysis import race_record as race

        runs, scores = {}, {}
        for pair, result in zip(pairs, results):
            value = result.return_value  # a JobResult (run_job never raises)
            if value is None or value.status != "FINISHED" or not value.run_id:
                continue
            runs[pair] = value.run_id
            scores[pair] = value.objectives.get("last_val_accuracy")
            if cfg.tracking.enabled:
                tracking.tag_run(cfg.tracking, value.run_id,
                                 {tracking.TAG + k: v for k, v in race.rung_tags(rung, rungs, epoch).items()})
        return runs, scores

    def _tag(self, cfg, run_ids: list[str], stop) -> None:
        from fashion_lab.record import tracking
        from fashion_lab.analysis import race_record as race

        if cfg.tracking.enabled:
            for run_id in run_ids:
                tracking.tag_run(cfg.tracking, run_id,
                                 {tracking.TAG + k: v for k, v in race.stop_tags(stop).items()})
