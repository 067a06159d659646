"""The search sweeper (every strategy, named kerastuner for history): ``tuner.parallel_trials`` lanes
(fashion_lab/search/lanes.py) each ask the backend for a trial as soon as their last one ended, launch it
through the configured launcher (basic, joblib, submitit, ...) and tell the backend its result.

The search itself (space, fingerprint, oracle, trial overrides, the end) is fashion_lab/search/study.py;
the parent run and the jobs are fashion_lab/sweeps/campaign.py. Hydra imports this module whenever it
scans for plugins, so it imports nothing heavy at the top.
"""

# No `from __future__ import annotations`: Hydra loads plugin modules outside sys.modules, where
# dataclasses can't resolve string annotations.

import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class KerasTunerSweeperConf:
    _target_: str = "hydra_plugins.fashion_lab_kerastuner.kerastuner_sweeper.KerasTunerSweeper"
    params: Optional[Dict[str, Any]] = field(default_factory=dict)  # the space, in Hydra's override grammar


ConfigStore.instance().store(group="hydra/sweeper", name="kerastuner", node=KerasTunerSweeperConf,
                             provider="fashion_lab")


class KerasTunerSweeper(Sweeper):
    def __init__(self, params: Optional[DictConfig] = None) -> None:
        self.params = params  # also read from the config in setup, where the sweep file put it
        self.config: Optional[DictConfig] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    def sweep(self, arguments: List[str]) -> Any:
        from fashion_lab.sweeps import campaign
        from fashion_lab.search import outcome, seeding
        from fashion_lab.search import study as search
        from fashion_lab.search.backend import SearchStopped, open_backend
        from fashion_lab.search.lanes import Lanes, lanes_for

        campaign.fashion_labs_own(self.config, "kerastuner", "fashion-lab tune")
        try:
            s = search.prepare(self.config, arguments)
            resuming = search.check_resumable(s)
        except Exception as error:  # a bad space or a changed search: refused before any run exists
            raise campaign.Stop(error) from error
        s.parent_run_id = campaign.open_parent(
            s.cfg.tracking, key=f"search:{s.directory.absolute()}", restart=not resuming, name=f"search {s.project} {s.strategy}",
            role="search", strategy=s.strategy, sweep_name=s.name, swept_keys=s.swept_keys, definition=s.definition,
            tags={f"fashion_lab.tuner.{k}": str(v) for k, v in s.cfg.tuner.items()} | {"fashion_lab.fingerprint": s.fingerprint})
        search.claim_folder(s)  # a new search's folder gets fashion-lab's marker before KerasTuner writes in it
        if s.cfg.tuner.seed_from_store and not resuming:  # a resumed search already holds its seeds
            s.seeds = seeding.store_seeds(s)
            print(f"seeded {len(s.seeds)} trials from finished runs in the store (runs "
                  f"{' '.join(run for seed in s.seeds for run in seed.run_ids) or 'none'}); they are not trained again")
        backend = open_backend(s)
        search.save_state(s)
        campaign.raise_on_sigterm()
        lanes = Lanes(backend, jobs_of=lambda trial: search.trial_jobs(s, trial), launch=self.launcher.launch,
                      tell=lambda trial, results: self._tell(s, backend, trial, results))
        count, lanes.per_ask = lanes_for(self.launcher, s.cfg.tuner.parallel_trials)
        aborted = None
        try:
            lanes.run(count)
        except SearchStopped as error:
            aborted = str(error)
        if lanes.lost:  # left running in the backend: the same command re-runs them
            reason = f"jobs ended without a result ({'; '.join(lanes.lost)}); run the same command again"
            campaign.abort(reason, status="KILLED")
            raise campaign.Stop(campaign.SweepFailed(reason))
        if not outcome.finish(s, backend, aborted):
            raise campaign.Stop(campaign.SweepFailed(aborted or "every trial failed"))

    @staticmethod
    def _tell(s, backend, trial, results: list) -> None:
        """A trial's JobResults: its score (or failure) to the backend, its memory to the parent run."""
        from fashion_lab.search import study as search
        from fashion_lab.record import tracking

        failed = [r for r in results if r.status != "FINISHED"]
        if failed:
            reason = (failed[0].reason or "failed").splitlines()[0][:300]
            s.failures.append(f"trial {trial.trial_id}: {reason}")
            print(f"trial {trial.trial_id} failed: {reason}", file=sys.stderr)
            told = dict(failure=reason)
        else:
            score, pruned = search.score(s, results), next((r.pruned for r in results if r.pruned), None)
            told = dict(score=score, pruned=bool(pruned))
            print(f"trial {trial.trial_id}: {' '.join(search.to_overrides(s.dims, trial.values))} -> "
                  f"{s.cfg.tuner.objective}={score:.4f} (runs {' '.join(str(r.run_id) for r in results)})"
                  + (f"; pruned at epoch {pruned['epoch']}: {pruned['reason']}" if pruned else ""))
        if s.parent_run_id:
            memory = {"trial_rss_mb": max(r.rss_mb for r in results)}
            peaks = [r.peak_child_rss_mb for r in results if r.peak_child_rss_mb == r.peak_child_rss_mb]
            if peaks:
                memory["trial_process_peak_rss_mb"] = max(peaks)
            tracking.log_run_metrics(s.cfg.tracking, s.parent_run_id, memory, step=int(trial.trial_id))
        backend.tell(trial.trial_id, **told)
