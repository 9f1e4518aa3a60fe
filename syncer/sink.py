"""The in-process sink: pull mode's informers write straight into the store.

Implements :class:`agent.sink.Sink` over :class:`syncer.ingest.Store`, translating the
store's failures into what the agent's pipeline knows how to handle, and counting what it
stores as the ingest listener does for agents (``syncer.metrics``).

A store call runs to its end even when the pipeline that made it is cancelled (a shutdown,
a type withdrawn): the batch commits with its checkpoint, or fails, but is not cut short
half way, and ``flush`` waits for the calls still under way. A restart then resumes from
that checkpoint, with no relist.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from agent.events import AnyObject, KubeObject, RawObject, RelistReason, WatchEvent
from agent.sink import SinkNeedsSnapshot, SinkRejected, SinkUnavailable
from kube.resources import ResourceType
from syncer import metrics
from syncer.ingest import CheckpointMismatch, FenceLost, SnapshotLost, Store
from syncer.quota import QuotaExceeded
from syncer.validate import BadInput

log = logging.getLogger(__name__)
T = TypeVar("T")

# Failures of the database connection, not of the data: retry with backoff.
UNAVAILABLE = (OSError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
               asyncpg.ConnectionFailureError, asyncpg.AdminShutdownError,
               asyncpg.TooManyConnectionsError)
# Errors of one attempt that a retry can clear: deadlock, serialization, lock timeout.
TRANSIENT = (asyncpg.exceptions.TransactionRollbackError, asyncpg.exceptions.LockNotAvailableError,
             asyncpg.exceptions.OperatorInterventionError)


@asynccontextmanager
async def translated(store: Store, *, cluster: str, rtype: ResourceType) -> AsyncIterator[None]:
    """Map store exceptions to sink exceptions, keeping a type's last error on record."""
    try:
        yield
    except (SnapshotLost, CheckpointMismatch) as exc:
        raise SinkNeedsSnapshot(str(exc)) from exc
    except (BadInput, QuotaExceeded) as exc:
        # Objects that cannot be stored are skipped by the store; what arrives here refuses a
        # whole call, and the pipeline tries again later with a fresh snapshot.
        await _record(store, cluster=cluster, rtype=rtype, message=str(exc))
        raise SinkRejected(str(exc)) from exc
    except FenceLost as exc:
        raise SinkUnavailable(str(exc)) from exc
    except UNAVAILABLE as exc:
        raise SinkUnavailable(f"store unavailable: {exc}") from exc
    except asyncpg.DataError as exc:  # the data itself, e.g. text PostgreSQL cannot store
        await _record(store, cluster=cluster, rtype=rtype, message=f"the store refused the data: {exc}")
        raise SinkRejected(f"the store refused the data: {exc}") from exc
    except asyncpg.PostgresError as exc:
        # Retried with backoff whatever it is: in pull mode no error may end a type's sync.
        level = logging.WARNING if isinstance(exc, TRANSIENT) else logging.ERROR
        log.log(level, "store error", extra={"cluster": cluster, "type": rtype.key, "error": str(exc)})
        raise SinkUnavailable(f"store error: {exc}") from exc


async def _record(store: Store, *, cluster: str, rtype: ResourceType, message: str) -> None:
    try:
        await store.record_error(cluster=cluster, rtype=rtype, message=message)
    except UNAVAILABLE:
        log.warning("could not record a sync error", extra={"cluster": cluster, "type": rtype.key})


class StoreSink:
    """A :class:`agent.sink.Sink` for one cluster, writing through a :class:`Store`."""

    def __init__(self, *, store: Store, cluster: str, keep_secret_data: bool = False,
                 gate: asyncio.Semaphore | None = None) -> None:
        self.store = store
        self.cluster = cluster
        self.keep_secret_data = keep_secret_data
        # Store calls of many sinks at once (pull mode's clusters): each holds its page twice
        # (as JSON and validated) while it waits for a connection; past the gate it holds it
        # once, as JSON, counted by its runner's budget.
        self._gate = gate
        self._writes: set[asyncio.Task[Any]] = set()  # store calls under way

    async def _call(self, rtype: ResourceType, operation: metrics.Operation,
                    op: Callable[[], Awaitable[T]]) -> T:
        async with translated(self.store, cluster=self.cluster, rtype=rtype):
            with metrics.timed(operation):
                task = asyncio.create_task(self._gated(op), name=f"store {operation} {self.cluster}")
                self._writes.add(task)
                task.add_done_callback(_settled)
                task.add_done_callback(self._writes.discard)
                # Cancelling the caller leaves the call to end (see the module docstring).
                return await asyncio.shield(task)

    async def _gated(self, op: Callable[[], Awaitable[T]]) -> T:
        if self._gate is None:
            return await op()
        with metrics.PULL_WAITING.track_inprogress():
            await self._gate.acquire()
        try:
            return await op()
        finally:
            self._gate.release()

    async def flush(self, *, timeout: float) -> None:  # noqa: ASYNC109  (ending late is no error)
        """Wait up to ``timeout`` seconds for the store calls under way to end."""
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=timeout)

    async def checkpoints(self) -> dict[str, str]:
        try:
            return await self.store.checkpoints(cluster=self.cluster)
        except UNAVAILABLE as exc:
            raise SinkUnavailable(f"store unavailable: {exc}") from exc

    async def snapshot_start(self, rtype: ResourceType, *, reason: RelistReason = "initial") -> str:
        snapshot_id = await self._call(
            rtype, "snapshot_start", lambda: self.store.snapshot_start(cluster=self.cluster, rtype=rtype))
        metrics.relisted(cluster=self.cluster, rtype=rtype, reason=reason)
        return str(snapshot_id)

    async def snapshot_page(self, rtype: ResourceType, snapshot_id: str, items: Sequence[AnyObject]) -> None:
        # The informer hands its objects over as JSON; the store decodes them off the event
        # loop, one at a time (``syncer.ingest``): a page decoded here would stop the loop,
        # and every other cluster's informers and requests with it.
        result = await self._call(rtype, "snapshot_page", lambda: self.store.snapshot_page(
            cluster=self.cluster, rtype=rtype, snapshot_id=_snapshot_id(snapshot_id),
            items=[_json(item) for item in items], keep_secret_data=self.keep_secret_data))
        metrics.stored(cluster=self.cluster, rtype=rtype, objects=result.accepted - result.skipped)

    async def snapshot_end(self, rtype: ResourceType, snapshot_id: str, *, resource_version: str,
                           count: int) -> None:
        await self._call(rtype, "snapshot_end", lambda: self.store.snapshot_end(
            cluster=self.cluster, rtype=rtype, snapshot_id=_snapshot_id(snapshot_id),
            resource_version=resource_version, count=count))

    async def changes(self, rtype: ResourceType, changes: list[WatchEvent], *, resource_version: str,
                      after: str | None = None) -> None:
        events = [{"type": c.type, "object": _json(c.object)} for c in changes]
        result = await self._call(rtype, "changes", lambda: self.store.apply_batch(
            cluster=self.cluster, rtype=rtype, events=events, resource_version=resource_version,
            after=after, keep_secret_data=self.keep_secret_data))
        metrics.stored(cluster=self.cluster, rtype=rtype, changes=result.applied)

    async def remove_type(self, rtype: ResourceType) -> None:
        await self._call(rtype, "remove_type",
                         lambda: self.store.remove_type(cluster=self.cluster, rtype=rtype))


def _settled(task: asyncio.Task[Any]) -> None:
    """A call whose caller was cancelled ends unobserved: its exception is retrieved here
    (what it was is the caller's concern, and the caller is gone)."""
    if not task.cancelled():
        task.exception()


def _json(obj: AnyObject) -> bytes | KubeObject:
    return obj.json if isinstance(obj, RawObject) else obj


def _snapshot_id(value: str) -> int:
    if not value.isdigit():
        raise SinkNeedsSnapshot(f"unknown snapshot {value!r}")
    return int(value)
