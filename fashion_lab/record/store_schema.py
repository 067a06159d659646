"""The installed MLflow's schema revision against a sqlite store's: a store whose creation was cut short,
or an older MLflow's, is refused in one line. Never imports MLflow."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Optional


def schema_problem(db: Path, found: list[str]) -> Optional[str]:
    """None when the store's schema revisions (``found``, its alembic_version rows) are the installed
    MLflow's; else what to do. A store whose creation was killed half-way (fashion-lab builds new ones
    whole, client.client_for; plain mlflow does not) or one an older MLflow made stops at an earlier
    revision, and every later command would fail deep in MLflow with a long traceback."""
    head = mlflow_schema_head()
    if head is None or found == [head]:
        return None
    return (f"has MLflow schema revision {found[0] if found else 'none'}, this MLflow needs {head}: a store "
            f"whose creation was cut short, or one an older MLflow made; back it up, then "
            f"`mlflow db upgrade sqlite:///{db}` (or delete it if it holds nothing)")


@functools.lru_cache(maxsize=1)
def mlflow_schema_head() -> Optional[str]:
    """The installed MLflow's newest schema revision, read from its migration files without importing
    MLflow (a refusal stays fast): the revision no other one names as its parent."""
    import importlib.util

    spec = importlib.util.find_spec("mlflow")
    versions = Path(spec.origin).parent / "store" / "db_migrations" / "versions" if spec and spec.origin else None
    if versions is None or not versions.is_dir():
        return None
    revisions, parents = set(), set()
    for script in versions.glob("*.py"):
        text = script.read_text()
        revisions.update(re.findall(r'^revision = ["\']([0-9a-f]+)["\']', text, re.M))
        parents.update(re.findall(r'["\']([0-9a-f]+)["\']', "".join(re.findall(r"^down_revision = (.*)$", text, re.M))))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None

