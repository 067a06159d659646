"""``fashion-lab upload PATH... [tracking.uri=URI]``: records kept on disk while the server was away,
checked whole as untrusted data, then put into the store the command names."""

from __future__ import annotations

import sys

from fashion_lab.cli.commands import fail

UPLOAD_USAGE = """usage: fashion-lab upload PATH... [tracking.uri=URI]

Upload run records that were kept on local disk because the tracking server could not be
reached (fashion-lab prints the PATH when that happens). PATH is one record or a folder of them
(tracking.offline_dir, default ./fashion-lab-offline). They go to tracking.uri (default: the
default store, sqlite:///mlflow.db here), never to a store the record names; each record is
checked whole first. MLFLOW_TRACKING_USERNAME/PASSWORD are used as usual."""


def _upload_args(argv: list[str]):
    """(the store's URI, the record paths) of ``fashion-lab upload ARGS``."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from fashion_lab.config.loading import CONF_DIR

    # the command names the store: the default one (conf/tracking/mlflow.yaml, its one copy) unless told
    uri, paths = OmegaConf.load(CONF_DIR / "tracking" / "mlflow.yaml").uri, []
    for arg in argv:
        if arg.startswith("tracking.uri="):
            uri = arg.split("=", 1)[1]
        elif "=" in arg and not Path(arg).exists():
            fail(f"upload takes record folders and tracking.uri=URI, not {arg!r}")
        else:
            paths.append(Path(arg))
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        fail(f"no such record: {', '.join(missing)}")
    if not uri:
        fail("tracking.uri='' is not allowed: upload needs the store to put the records in")
    return uri, paths


def upload_command(argv: list[str]) -> int:
    from fashion_lab.record.offline import RUN_FILE, records
    from fashion_lab.record.spool_checks import SpoolError, read_record
    from fashion_lab.record.tracking import upload_record

    if not argv or argv[0] in ("-h", "--help", "help"):
        print(UPLOAD_USAGE)
        return 0 if argv else 2
    uri, paths = _upload_args(argv)
    found = records(paths)
    if not found:
        fail(f"no run records (folders with {RUN_FILE}) in {', '.join(map(str, paths))}")
    checked, refused, failed = [], [], 0
    for folder in found:  # every record checked whole before anything of any is sent
        try:
            checked.append(read_record(folder))
        except SpoolError as error:
            refused.append(str(error))
    for record in checked if not refused else []:
        try:
            print(upload_record(record, uri).line)
        except SpoolError as error:
            refused.append(str(error))
        except Exception as error:  # noqa: BLE001 - one line per record, the rest still tried
            failed += 1
            print(f"fashion-lab: error: could not upload {record.folder}: {type(error).__name__}: "
                  f"{str(error).splitlines()[0] if str(error) else ''}", file=sys.stderr)
    for line in refused:
        print(f"fashion-lab: error: {line}", file=sys.stderr)
    return 2 if refused else 1 if failed else 0
