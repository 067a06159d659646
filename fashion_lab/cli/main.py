"""The ``fashion-lab`` command: a thin dispatcher. Imports nothing heavy until a command runs.

Every command takes Hydra overrides (``key=value``), so ``tracking.uri=...`` points any
of them at a store. ``fashion-lab --help`` must stay fast: no TensorFlow, no MLflow here.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys


# name -> ("module:function", one-line help). Each function takes the remaining argv and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("fashion_lab.cli.commands:train_command", "train one configuration (add -m for a Hydra multirun sweep)"),
    "sweep": ("fashion_lab.cli.commands:sweep_command", "run a sweep from sweeps/ (fashion-lab sweep --list shows them)"),
    "tune": ("fashion_lab.cli.commands:tune_command", "search a sweep file's space (KerasTuner or Optuna, tuner=...): tune [SWEEP] [overrides]"),
    "report": ("fashion_lab.cli.record_commands:report_command", "write runs.csv, report.md, report.html for a sweep/search"),
    "reproduce": ("fashion_lab.cli.record_commands:reproduce_command", "re-run a recorded run (RUN_ID) and compare metrics"),
    "ui": ("fashion_lab.cli.record_commands:ui_command", "start the MLflow UI on the configured store (localhost)"),
    "upload": ("fashion_lab.cli.upload:upload_command", "upload run records kept on disk while the server was away"),
}

USAGE = """usage: fashion-lab COMMAND [hydra overrides...]

fashion-lab: Hydra-composed Keras CNN experiments on Fashion-MNIST, recorded in MLflow.

commands:
{commands}

Overrides compose conf/, e.g.
  fashion-lab train data=small model.bn_placement=before optimizer=adam trainer.epochs=3
  fashion-lab train --help      # every config group and key, with current values
Any command accepts tracking.uri=... (default: sqlite:///mlflow.db in the current directory).
"""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return USAGE.format(commands="\n".join(lines))


def _terminated(signum, frame):
    print("fashion-lab: terminated", file=sys.stderr)
    raise SystemExit(143)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides real output
    # oneDNN kernels: off by default on AMD CPUs, faster here (benchmarks/README.md); read when TF is imported
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    from fashion_lab.cli import completion  # light: no Hydra, TensorFlow or MLflow

    if completion.wants_script(argv):  # `fashion-lab train --shell-completion install=bash`
        return completion.print_script(argv, list(COMMANDS))
    if name not in COMMANDS:
        print(f"fashion-lab: error: unknown command {name!r}; choose from: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    module, function = COMMANDS[name][0].split(":")
    # SIGTERM outside a run (imports, data loading) ends with one line too; inside a run,
    # tracking.sigterm_raises takes over so the run is closed KILLED.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        return int(getattr(importlib.import_module(module), function)(rest) or 0)
    except KeyboardInterrupt:
        print("fashion-lab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, like other tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
