"""Where a pipeline delivers what its informer saw.

Two implementations exist: :class:`agent.push.HttpSink` (the agent in a member cluster,
shipping to the syncer over HTTP) and the syncer's in-process store sink (pull mode).
Every call returns only once the sink has committed the data (an acknowledgement), so a
checkpoint never runs ahead of what is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from agent.events import AnyObject, RelistReason, WatchEvent
from kube.resources import ResourceType


class SinkError(Exception):
    """A sink call failed; the subclass says what the pipeline should do about it."""


class SinkBusy(SinkError):
    """Backpressure (429/503): retry the same call after ``retry_after`` seconds."""

    def __init__(self, message: str = "sink busy", *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SinkNeedsSnapshot(SinkError):
    """The sink cannot go on from where the pipeline is: it no longer knows the snapshot
    (restarted, expired, pages lost) or a batch does not follow its checkpoint. List again.

    Over HTTP, the syncer's 409 reasons ``SnapshotLost`` and ``CheckpointMismatch`` both
    mean this."""


class SinkUnavailable(SinkError):
    """The sink cannot be reached (refused, reset, timeout, 5xx): retry with backoff."""


class SinkRejected(SinkError):
    """The sink refused the data itself (400) or the credentials (401/403/404).

    Retrying the same request cannot succeed; the pipeline logs it loudly, counts it,
    and re-derives the type's state with a fresh snapshot later.
    """

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Sink(Protocol):
    async def checkpoints(self) -> dict[str, str]:
        """``ResourceType.key`` -> the last committed resourceVersion (checkpoint)."""
        ...

    async def snapshot_start(self, rtype: ResourceType, *, reason: RelistReason = "initial") -> str:
        """Begin a snapshot of ``rtype``; returns its id. ``reason``: why (for metrics)."""
        ...

    async def snapshot_page(self, rtype: ResourceType, snapshot_id: str, items: Sequence[AnyObject]) -> None:
        """Add ``items`` to the snapshot: the informer's :class:`agent.events.RawObject`, or
        decoded objects."""
        ...

    async def snapshot_end(
        self, rtype: ResourceType, snapshot_id: str, *, resource_version: str, count: int
    ) -> None:
        """Complete the snapshot: objects of ``rtype`` not in it are deleted."""
        ...

    async def changes(
        self, rtype: ResourceType, changes: list[WatchEvent], *, resource_version: str,
        after: str | None = None,
    ) -> None:
        """Apply ``changes`` (possibly none: a bookmark) and move the checkpoint.

        ``after`` is the checkpoint the batch follows (the last one acknowledged). A sink
        whose committed checkpoint is neither ``after`` nor ``resource_version`` refuses
        the batch with ``SinkNeedsSnapshot``: it is older than what is stored, or follows state
        the sink no longer has, and only a fresh snapshot is safe."""
        ...

    async def remove_type(self, rtype: ResourceType) -> None:
        """The member cluster no longer serves ``rtype``: delete its objects."""
        ...
