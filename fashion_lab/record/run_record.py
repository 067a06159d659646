"""A recorded run as plain data: what every layer above record reads of a run, never an MLflow entity."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from fashion_lab.record.names import TAG


@dataclass(frozen=True)
class RunRecord:
    """One run of the store: identity, status, times (ms since the epoch) and its latest values."""

    run_id: str
    experiment_id: str
    name: str = ""
    status: str = "RUNNING"
    start_time: Optional[int] = None
    end_time: Optional[int] = None
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)

    @property
    def seconds(self) -> Optional[float]:
        """Wall time from start to end, None while it runs (or if either time is missing)."""
        return (self.end_time - self.start_time) / 1000 if self.end_time and self.start_time else None

    def tag(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """A fashion-lab tag by its short name (``tag("overrides")`` reads ``fashion_lab.overrides``)."""
        return self.tags.get(TAG + name, default)


def run_record(run) -> RunRecord:
    """The plain record of an MLflow ``Run`` (the one place that reads its ``info`` and ``data``)."""
    info, data = run.info, run.data
    return RunRecord(run_id=info.run_id, experiment_id=info.experiment_id, name=info.run_name or "",
                     status=info.status, start_time=info.start_time, end_time=info.end_time,
                     params=dict(data.params), metrics=dict(data.metrics), tags=dict(data.tags))
