"""Bad input is refused by the real CLI in one line naming key and value, before data or a run exists.

Each class of issue 13 ("Validation stops at the schema") is a list of cases; every case runs the CLI's
own ``main`` in-process (``cli_in_process``: the same argv parsing, composition and preflight, without a
second interpreter's start-up) and asserts the exit code, a one- or two-line message without a traceback
that names the key and the value, and that the store was never created (no run). The contract of the
installed script itself (exit 2, one line, nothing written, not even Hydra's folder) keeps subprocess
tests: ``test_a_refused_train_writes_no_folder_either`` and ``test_hydra_never_suggests_adding_a_plus``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fashion_lab.config import ConfigError
from fashion_lab.model.geometry import estimate_size
from fashion_lab.preflight import validate
from conftest import compose
from helpers.refusals import assert_refused

TRAIN = ("train", "data=synthetic", "trainer.epochs=1")

# class -> [(extra args, key the message must name, value it must name)]
CASES: dict[str, list[tuple[tuple[str, ...], str, str]]] = {
    "seeds": [
        (("trainer.seed=99999999999",), "trainer.seed", "99999999999"),
        (("data.split_seed=-1",), "data.split_seed", "-1"),
        (("tuner.seed=4294967296",), "tuner.seed", "4294967296"),
        (("tuner.seed=4294967295",), "tuner.seed", "4294967295"),  # the oracle is given seed + 1
    ],
    "memory": [
        (("model.filters=[100000]",), "model.filters", "100000"),
        (("model.filters=[4096,4096]",), "model.filters", "4096"),          # every layer in bounds, the model not
        (("model.filters=[1024,1024]", "trainer.batch_size=65536"), "model.filters", "1024"),
    ],
    "data sizes": [
        (("data.val_samples=1000",), "data.val_samples", "1000"),
        (("data.val_samples=500", "data.train_samples=600"), "data.train_samples", "600"),
        (("data=fashion_mnist", "data.val_samples=60000"), "data.val_samples", "60000"),
        (("data.synthetic_train=100000000",), "data.synthetic_train", "100000000"),
    ],
    "absurd values": [
        (("trainer.epochs=1000000000",), "trainer.epochs", "1000000000"),
        (("trainer.batch_size=10000000",), "trainer.batch_size", "10000000"),
        (("model.dense_units=10000000",), "model.dense_units", "10000000"),
        (("model.convs_per_stack=1000",), "model.convs_per_stack", "1000"),
        (("trainer.threads=100000",), "trainer.threads", "100000"),
        (("tuner.max_trials=100000000",), "tuner.max_trials", "100000000"),
        (("tuner.num_initial_points=0",), "tuner.num_initial_points", "0"),
    ],
    "unknown strategy": [
        (("sweep.strategy=genetic",), "sweep.strategy", "genetic"),
        (("tuner.strategy=genetic",), "tuner.strategy", "genetic"),
    ],
    "unused settings": [
        (("report.metric=nosuch",), "report.metric", "nosuch"),
        (("reproduce.tolerance=-1",), "reproduce.tolerance", "-1"),
        (("ui.port=99999",), "ui.port", "99999"),
        (("ui.workers=0",), "ui.workers", "0"),
        (("ui.host=0.0.0.0",), "ui.host", "0.0.0.0"),  # issue 23, item 5: every interface, no login
        (("ui.host=",), "ui.host", "''"),
    ],
    "unknown keys": [
        (("+model.conv_dropuot=0.2",), "model.conv_dropuot", "did you mean model.conv_dropout?"),
        (("model.conv_dropuot=0.2",), "model.conv_dropuot", "did you mean model.conv_dropout?"),
        (("++trainer.epoch=3",), "trainer.epoch", "did you mean trainer.epochs?"),
        (("+tracking.urii=sqlite:///x.db",), "tracking.urii", "did you mean tracking.uri?"),
    ],
    "data directory": [
        (("data=fashion_mnist", "data.dir=/nonexistent"), "data.dir", "/nonexistent"),
        (("data.dir=/tmp",), "data.dir", "/tmp"),                            # synthetic reads no files
    ],
    # issue 23, item 6: refused early, not failed late (after a run, or a whole search, exists)
    "refused early": [
        (("optimizer.learning_rate=inf",), "optimizer.learning_rate", "inf"),
        (("optimizer.learning_rate=1e400",), "optimizer.learning_rate", "inf"),  # parses as inf
        (("optimizer.decay=inf",), "optimizer.decay", "inf"),
        (("optimizer=adamw", "optimizer.weight_decay=inf"), "optimizer.weight_decay", "inf"),
        (("tuner.model_name=bad/name",), "tuner.model_name", "bad/name"),
        (("tuner.early_stopping_patience=-5",), "tuner.early_stopping_patience", "-5"),
        (("tracking.artifact_location=/proc/x",), "tracking.artifact_location", "/proc/x"),
        (("tracking.experiment=" + "x" * 10_000,), "tracking.experiment", "10,000 characters"),
        (("sweep.seeds=100000",), "sweep.seeds", "100000"),
        (("sweep.until_sure=true", "sweep.seeds=3", "sweep.max_seeds=2"), "sweep.max_seeds", "2"),
    ],
    "multirun points": [
        (("-m", "model.conv_dropout=0.1,1.5"), "model.conv_dropout", "1.5"),
        (("-m", "data.val_samples=100,995"), "data.val_samples", "995"),
        (("-m", "trainer.seed=0,99999999999"), "trainer.seed", "99999999999"),
    ],
}
# The other commands refuse their own settings the same way.
COMMAND_CASES = [
    (("report", "report.metric=nosuch"), "report.metric", "nosuch"),
    (("ui", "ui.port=99999"), "ui.port", "99999"),
    (("ui", "ui.host=0.0.0.0"), "ui.host", "ui.allow_remote=true"),
    (("reproduce", "0123abcd", "reproduce.tolerance=-1"), "reproduce.tolerance", "-1"),
    (("tune", "search", "data=synthetic", "tuner.max_trials=0"), "tuner.max_trials", "0"),
    (("tune", "search", "data=synthetic", "tuner.model_name=bad/name"), "tuner.model_name", "bad/name"),
    (("tune", "search", "data=synthetic", "tuner.early_stopping_patience=-5"), "tuner.early_stopping_patience", "-5"),
    (("sweep", "bn_placement", "data=synthetic", "sweep.seeds=100000"), "sweep.seeds", "100000"),
    (("sweep", "quickstart", "data=synthetic", "sweep.max_seeds=2"), "sweep.max_seeds", "2"),
]


def matrix(cases: dict) -> list:
    return [pytest.param(cls, args, key, value, id=f"{cls}: {' '.join(args)}")
            for cls, rows in cases.items() for args, key, value in rows]


@pytest.mark.parametrize("cls,args,key,value", matrix(CASES))
def test_bad_input_is_refused_in_one_line_before_any_run(cli_in_process, tmp_path, cls, args, key, value):
    db = tmp_path / "m.db"
    multirun = args[:1] == ("-m",)
    command = ("train", "-m", *TRAIN[1:], *args[1:]) if multirun else (*TRAIN, *args)
    result = cli_in_process(*command, f"tracking.uri=sqlite:///{db}", timeout=120)
    assert_refused(result, key, value)
    assert not db.exists(), "the store must not even be created"
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("args,key,value", COMMAND_CASES, ids=lambda v: " ".join(v) if isinstance(v, tuple) else None)
def test_other_commands_refuse_their_settings(cli_in_process, tmp_path, args, key, value):
    result = cli_in_process(*args, f"tracking.uri=sqlite:///{tmp_path / 'm.db'}", timeout=120)
    assert_refused(result, key, value)
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("args", [args for args, _, _ in CASES["refused early"]][::3], ids=lambda a: a[0][:40])
def test_a_refused_train_writes_no_folder_either(run_cli, tmp_path, args):
    """Not even Hydra's outputs/DATE/TIME: a single run is validated before Hydra starts."""
    result = run_cli(*TRAIN, *args, f"tracking.uri=sqlite:///{tmp_path / 'm.db'}", timeout=120)
    assert result.returncode == 2, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_hydra_never_suggests_adding_a_plus(run_cli):
    result = run_cli(*TRAIN, "model.conv_dropuot=0.2")
    assert "+model.conv_dropuot" not in result.stderr and "To append" not in result.stderr
    assert "did you mean model.conv_dropout?" in result.stderr


# --- search spaces and sweep files (a folder of extra sweep files, as users add them) ----------

SWEEP_FILES = {
    "bad_interval": """\
        # conv dropout beyond 1
        hydra:
          sweeper:
            params:
              model.conv_dropout: interval(0.5, 1.5)
        sweep:
          strategy: random
        """,
    "bad_key": """\
        # a misspelt key
        hydra:
          sweeper:
            params:
              model.conv_dropuot: interval(0.1, 0.3)
        sweep:
          strategy: random
        """,
    "bad_choice": """\
        # an optimizer that does not exist
        hydra:
          sweeper:
            params:
              optimizer: sgd,adagrad
        sweep:
          strategy: random
        """,
    "bad_grid_key": """\
        # a misspelt key in a grid
        hydra:
          sweeper:
            params:
              model.conv_dropuot: 0.1,0.3
        """,
    "bad_grid_value": """\
        # one point out of range
        hydra:
          sweeper:
            params:
              model.dense_units: 64,0
        """,
    "code_callback": """\
        # runs a command at start-up
        hydra:
          callbacks:
            evil:
              _target_: os.system
              command: touch pwned
          sweeper:
            params:
              model.conv_dropout: 0.0,0.1
        """,
    "code_target": """\
        # instantiates something
        hydra:
          sweeper:
            params:
              model.conv_dropout: 0.0,0.1
        trainer:
          extra:
            _target_: subprocess.call
            args: ["true"]
        """,
}
SWEEP_CASES = [
    ("search spaces", ("tune", "bad_interval"), "model.conv_dropout", "interval(0.5, 1.5)"),
    ("search spaces", ("tune", "bad_key"), "model.conv_dropuot", "did you mean model.conv_dropout?"),
    ("search spaces", ("tune", "bad_choice"), "optimizer", "adagrad"),
    ("search spaces", ("sweep", "bad_interval"), "model.conv_dropout", "interval(0.5, 1.5)"),
    ("multirun points", ("sweep", "bad_grid_key"), "model.conv_dropuot", "did you mean model.conv_dropout?"),
    ("multirun points", ("sweep", "bad_grid_value"), "model.dense_units", "0"),
    ("code in sweep files", ("sweep", "code_callback"), "hydra.callbacks.evil._target_", "os.system"),
    ("code in sweep files", ("train", "-m", "sweep=code_callback"), "_target_", "os.system"),
    ("code in sweep files", ("tune", "code_callback"), "_target_", "os.system"),
    ("code in sweep files", ("sweep", "code_target"), "trainer.extra._target_", "subprocess.call"),
]


@pytest.fixture
def sweeps_dir(tmp_path) -> Path:
    folder = tmp_path / "extra_sweeps"
    folder.mkdir()
    for name, text in SWEEP_FILES.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
    return folder


@pytest.mark.parametrize("cls,args,key,value", [pytest.param(*c, id=f"{c[0]}: {' '.join(c[1])}")
                                                for c in SWEEP_CASES])
def test_bad_sweep_files_are_refused_before_the_first_trial(run_cli, tmp_path, sweeps_dir, cls, args, key, value):
    db = tmp_path / "m.db"
    result = run_cli(*args, "data=synthetic", "trainer.epochs=1", f"tracking.uri=sqlite:///{db}",
                     f"tuner.directory={tmp_path / 'tuner'}", env={"FASHION_LAB_SWEEPS_DIR": str(sweeps_dir)},
                     timeout=120)
    assert_refused(result, key, value)
    assert not db.exists() and not (tmp_path / "pwned").exists()
    assert not (tmp_path / "tuner").exists()  # no search state either


def test_fashion_labs_own_callback_is_still_allowed():
    from fashion_lab.config import sweep_code
    from omegaconf import OmegaConf

    # The callback conf/config.yaml names (fashion_lab.callbacks.SweepCallback was its old name: no such
    # module now, and the target allow-list is exact). A sweep file may still not set hydra.callbacks.
    assert sweep_code(OmegaConf.create({"hydra": {"callbacks": {"sweep": {
        "_target_": "fashion_lab.sweeps.campaign.Campaign"}}}})) is None


# --- the estimates behind the memory bound, without TensorFlow ---------------------------------

def test_size_estimate_matches_the_tutorial_network():
    params, _ = estimate_size(compose().model, 32)
    assert params == 1_679_082  # model.py's docstring: Keras counts the tutorial network so


@pytest.mark.parametrize("override", ["model=wide", "model=no_bn", "experiment=tutorial", "model.filters=[512,512]"])
def test_useful_models_stay_within_the_bounds(override):
    validate(compose([override]))


def test_memory_refusal_states_the_bound():
    with pytest.raises(ConfigError, match=r"100,000,000 parameters"):
        validate(compose(["model.filters=[4096,4096]"]))
