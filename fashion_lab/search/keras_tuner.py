"""The KerasTuner adapter: a strategy's oracle on a search's folder (the only importer of keras_tuner
with keras_tuner_fixes, which fences its internals)."""

from __future__ import annotations

from fashion_lab.search.keras_tuner_fixes import open_oracle, oracle_seed
from fashion_lab.search.space import declare

# tuner.strategy -> KerasTuner oracle class
ORACLES = {"random": "RandomSearchOracle", "bayesian": "BayesianOptimizationOracle",
           "hyperband": "HyperbandOracle", "grid": "GridSearchOracle"}  # one per config.keys.STRATEGIES


def make_oracle(search):
    """The strategy's KerasTuner oracle on the search's folder, reloaded when resuming."""
    import keras_tuner as kt

    from fashion_lab.search.study import OBJECTIVES

    t = search.cfg.tuner
    budget = dict(max_epochs=t.max_epochs, factor=t.factor) if t.strategy == "hyperband" else dict(max_trials=t.max_trials)
    if t.strategy == "bayesian":
        budget["num_initial_points"] = t.num_initial_points
    oracle = getattr(kt.oracles, ORACLES[t.strategy])(
        objective=kt.Objective(t.objective, OBJECTIVES[t.objective]), seed=oracle_seed(t.seed),
        max_consecutive_failed_trials=t.max_consecutive_failed_trials, **budget)
    hp = kt.HyperParameters()
    declare(hp, search.dims)
    return open_oracle(oracle, str(t.directory), search.project, hp, grid=t.strategy == "grid")
