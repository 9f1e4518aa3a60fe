"""Per-type sync status, kept current by the informer and the pipeline for health reports."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

Phase = Literal["starting", "listing", "watching", "backoff", "error", "stopped"]


@dataclass(kw_only=True)
class TypeStatus:
    """What one resource type's sync is doing; mutated in place, read by health checks."""

    key: str
    phase: Phase = "starting"
    last_error: str | None = None
    last_event_time: float | None = None  # wall clock (time.time()) of the last message
    objects_seen: int = 0
    resource_version: str | None = None  # last checkpoint the sink acknowledged
    snapshots: int = 0
    watches: int = 0
    rejected: int = 0  # batches the sink refused as bad data
    sink_error: str | None = None  # the sink's last failure while retrying, None once it works

    def saw(self, count: int = 1) -> None:
        self.objects_seen += count
        self.last_event_time = time.time()

    def failed(self, error: BaseException | str, *, phase: Phase = "backoff") -> None:
        self.phase = phase
        self.last_error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
