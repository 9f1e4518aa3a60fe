"""One resource type's path from informer to sink, with bounded memory.

The informer runs as a producer task into a :class:`~agent.buffer.MessageBuffer` (bounded by
bytes of objects, and by their count); a shipper drains it and calls the sink, one
acknowledged call at a time, batching consecutive changes (up to ``batch_max`` events or
``batch_wait`` seconds). Snapshot pages are the exception: up to ``pages_in_flight`` are sent
before the oldest is acknowledged. What one type holds is thus at most the buffer, the page
the informer is putting into it, the page the shipper took and the pages in flight (with the
defaults, about 4 + 4 x 1 MiB of JSON), and what all types hold together at most
``in_flight_bytes`` (the runner's :class:`~agent.buffer.Budget`), from the moment a message
is put until the sink acknowledged it.

While the sink is healthy but slower than the cluster, a full buffer simply blocks the
informer (and with it the watch connection: TCP backpressure toward the apiserver).
While the sink is busy (``SinkBusy``) or unreachable (``SinkUnavailable``), a full
buffer is dropped instead, the informer stopped, and, once the sink answers again, the
type starts over with a fresh snapshot: nothing is lost, the state is re-derived from
the cluster, and memory stays bounded however long the outage lasts.

:meth:`Pipeline.drain` (the agent's shutdown) stops the informer and lets the shipper
deliver what the buffer holds, then ends the pipeline: what was acknowledged is
checkpointed, so the next start resumes from there instead of seeing it again.

``SinkNeedsSnapshot`` restarts with a fresh snapshot at once; ``SinkRejected`` (bad data) is
logged with the offending items, counted, and followed by a fresh snapshot after a
growing delay, so a poison object cannot make the agent hammer the syncer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from agent import metrics
from agent.backoff import Backoff
from agent.buffer import Budget, MessageBuffer, Overflowed, size
from agent.events import (
    AnyObject,
    Bookmark,
    InformerMessage,
    RawObject,
    RelistReason,
    SnapshotEnd,
    SnapshotPage,
    SnapshotStart,
    WatchEvent,
)
from agent.informer import Informer, InformerSettings
from agent.kubeclient import KubeClient
from agent.sink import Sink, SinkBusy, SinkNeedsSnapshot, SinkRejected, SinkUnavailable
from agent.status import TypeStatus
from kube.resources import ResourceType
from kube.tasks import STOP_TIMEOUT_S, stop_tasks

logger = logging.getLogger(__name__)
PROGRESS_EVERY = 10_000  # objects between snapshot progress lines
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class PipelineSettings:
    # Objects (a page counts its items, a bookmark one) and bytes (their JSON, and
    # OBJECT_OVERHEAD each) waiting for the shipper: these bounds keep the agent's memory
    # flat as clusters and their objects grow.
    buffer_limit: int = 1_000
    buffer_bytes: int = 4 * 1024 * 1024
    # Bytes all the pipelines of one runner hold at once, put and not yet acknowledged.
    in_flight_bytes: int = 16 * 1024 * 1024
    pages_in_flight: int = 2  # snapshot pages sent before the previous one is acknowledged
    batch_max: int = 500
    batch_wait: float = 0.05
    sink_backoff_base: float = 0.5
    sink_backoff_cap: float = 30.0
    reject_backoff_base: float = 5.0
    reject_backoff_cap: float = 300.0


class _Abandoned(Exception):
    """Shutting down with a sink that does not answer: stop delivering."""


class _Restart(Exception):
    """Start the type over with a fresh snapshot; ``wait_for_sink``: once it answers."""

    def __init__(self, reason: str, *, cause: RelistReason, wait_for_sink: bool = False,
                 delay: float = 0.0) -> None:
        super().__init__(reason)
        self.cause = cause
        self.wait_for_sink = wait_for_sink
        self.delay = delay


class Pipeline:
    """Informer -> buffer -> sink for one resource type; :meth:`run` until cancelled."""

    def __init__(
        self,
        *,
        client: KubeClient,
        sink: Sink,
        rtype: ResourceType,
        informer_settings: InformerSettings | None = None,
        settings: PipelineSettings | None = None,
        status: TypeStatus | None = None,
        budget: Budget | None = None,
    ) -> None:
        """``budget`` is shared by the pipelines of a runner; None: one of this pipeline's own."""
        self.client = client
        self.sink = sink
        self.rtype = rtype
        self.informer_settings = informer_settings or InformerSettings()
        self.settings = settings or PipelineSettings()
        self.budget = budget or Budget(self.settings.in_flight_bytes)
        self.status = status or TypeStatus(key=rtype.key)
        self._sink_backoff = Backoff(base=self.settings.sink_backoff_base, cap=self.settings.sink_backoff_cap)
        self._reject_backoff = Backoff(
            base=self.settings.reject_backoff_base, cap=self.settings.reject_backoff_cap
        )
        self._extra = {"resource": rtype.key}
        self._offending = ""  # names of the objects of the call in flight, for rejections
        self.draining = False
        self._producer: asyncio.Task[None] | None = None
        self._buffer: MessageBuffer | None = None

    async def run(self, *, checkpoint: str | None) -> None:
        """Sync forever; start from ``checkpoint`` (no LIST) when given."""
        self.status.resource_version = checkpoint
        cause: RelistReason = "initial"
        try:
            while not self.draining:
                try:
                    await self._generation(checkpoint, cause)
                except _Abandoned:
                    return
                except _Restart as restart:
                    if self.draining:
                        return
                    checkpoint, cause = None, restart.cause
                    await self._before_restart(restart)
        finally:
            self.status.phase = "stopped"

    async def drain(self) -> None:
        """Stop the informer; :meth:`run` returns once the buffer's messages are delivered
        (or at once, between generations). Bound the wait: a sink that stays unavailable
        keeps the shipper retrying."""
        self.draining = True
        if self._producer is not None:
            await stop_tasks([self._producer], timeout=STOP_TIMEOUT_S, log=logger)
        if self._buffer is not None:
            await self._buffer.finish()

    async def _before_restart(self, restart: _Restart) -> None:
        logger.warning("restarting with a fresh snapshot", extra={**self._extra, "reason": str(restart)})
        if restart.delay:
            await asyncio.sleep(restart.delay)
        if restart.wait_for_sink:
            await self._deliver(self.sink.checkpoints, buffer=None)

    async def _generation(self, checkpoint: str | None, cause: RelistReason) -> None:
        informer = Informer(
            client=self.client,
            rtype=self.rtype,
            settings=self.informer_settings,
            status=self.status,
        )
        buffer = MessageBuffer(self.settings.buffer_limit, self.settings.buffer_bytes, self.budget)
        stream = informer.stream(checkpoint=checkpoint, reason=cause)
        producer = asyncio.create_task(_produce(stream, buffer), name=f"informer {self.rtype.key}")
        self._producer, self._buffer = producer, buffer
        try:
            await _Shipper(self, buffer, composite=informer.scopes != (None,)).run()
        except Overflowed as exc:
            metrics.BUFFER_OVERFLOWS.labels(self.rtype.key).inc()
            raise _Restart(str(exc), cause="overflow", wait_for_sink=True) from exc
        finally:
            await stop_tasks([producer], timeout=STOP_TIMEOUT_S, log=logger)
            buffer.close()
            self._producer = self._buffer = None

    async def _deliver(self, call: Callable[[], Awaitable[T]], *, buffer: MessageBuffer | None) -> T:
        """Make one sink call, retrying while the sink is busy or unavailable."""
        while True:
            try:
                result = await call()
            except (SinkBusy, SinkUnavailable) as exc:
                if self.draining:
                    # Shutting down: what is held is not lost (the next start resumes from the
                    # committed checkpoint), so waiting for a sink that does not answer would
                    # only delay the exit past the pod's grace period.
                    logger.warning("shutdown: the sink does not answer; leaving the rest for the next start",
                                   extra={**self._extra, "error": str(exc)})
                    raise _Abandoned from exc
                if buffer is not None:
                    await buffer.set_sink_failing(True)
                    if buffer.overflowed:
                        raise Overflowed("buffer dropped while the sink failed") from exc
                delay = self._sink_backoff.next_delay()
                if isinstance(exc, SinkBusy):
                    delay = max(exc.retry_after, self.settings.sink_backoff_base)
                self.status.sink_error = str(exc)
                logger.warning("sink call failed", extra={**self._extra, "error": str(exc), "delay": delay})
                await asyncio.sleep(delay)
                continue
            except SinkNeedsSnapshot as exc:
                raise _Restart(f"snapshot lost: {exc}", cause="sink_needs_snapshot") from exc
            except SinkRejected as exc:
                raise self._rejected(exc) from exc
            self._sink_backoff.reset()
            self.status.sink_error = None
            if buffer is not None and buffer.sink_failing:
                await buffer.set_sink_failing(False)
            return result

    def _rejected(self, exc: SinkRejected) -> _Restart:
        self.status.rejected += 1
        metrics.BATCHES_REJECTED.labels(self.rtype.key).inc()
        delay = self._reject_backoff.next_delay()
        logger.error(
            "sink rejected data",
            extra={**self._extra, "error": str(exc), "delay": delay, "offending": self._offending},
        )
        return _Restart(f"rejected: {exc}", cause="rejected", delay=delay)


async def _produce(stream: AsyncGenerator[InformerMessage, None], buffer: MessageBuffer) -> None:
    try:
        async for message in stream:
            await buffer.put(message)
            del message  # in the buffer: not held here too while the informer reads the next
    except Overflowed:
        pass  # the shipper sees buffer.overflowed and restarts the type
    finally:
        await stream.aclose()


class _Shipper:
    """Drains one generation's buffer into the sink, in order, one call at a time."""

    def __init__(self, pipeline: Pipeline, buffer: MessageBuffer, *, composite: bool) -> None:
        self.pipeline = pipeline
        self.buffer = buffer
        self.composite = composite
        self.rtype = pipeline.rtype
        self.sink = pipeline.sink
        self.snapshot_id: str | None = None
        self.count = 0
        self.started = time.monotonic()
        self.pending: InformerMessage | None = None
        self.in_flight: list[asyncio.Task[None]] = []  # snapshot pages not yet acknowledged

    async def run(self) -> None:
        """Until cancelled, or until a finished buffer (``Pipeline.drain``) is delivered."""
        try:
            while (message := await self._next()) is not None or not self.buffer.finished:
                await self._ship(message)
            await self._settle(keep=0)
        finally:
            await stop_tasks(self.in_flight, timeout=STOP_TIMEOUT_S, log=logger)

    async def _next(self) -> InformerMessage | None:
        message, self.pending = self.pending, None
        return message or await self.buffer.get()

    async def _ship(self, message: InformerMessage | None) -> None:
        """Send ``message`` on; what it held is let go once the sink acknowledged it."""
        if message is None:
            return
        if isinstance(message, SnapshotPage):
            await self._page(message)  # its delivery lets go of it
            return
        await self._settle(keep=0)  # everything else waits for the pages before it
        if isinstance(message, SnapshotStart):
            await self._start(message)
        elif isinstance(message, SnapshotEnd):
            await self._end(message)
        else:
            await self._changes(message)  # lets go of every message of its batch
            return
        self.buffer.done(size(message))

    async def _settle(self, *, keep: int) -> None:
        """Wait until at most ``keep`` pages are in flight; a failed page fails the shipper.

        Pages of one snapshot may commit in any order (the snapshot's end counts them), so
        sending the next while the previous commits overlaps the agent's, the syncer's and
        the database's work; the end is only sent once every page is acknowledged.
        """
        while len(self.in_flight) > keep:
            oldest = self.in_flight.pop(0)
            await oldest  # raises what the page's delivery raised

    async def _start(self, start: SnapshotStart) -> None:
        reason = start.reason
        self.snapshot_id = await self._deliver(lambda: self.sink.snapshot_start(self.rtype, reason=reason))
        metrics.RELISTS.labels(self.rtype.key, start.reason).inc()
        self.count = 0
        self.started = time.monotonic()
        logger.info("snapshot started", extra={**self.pipeline._extra, "reason": start.reason})

    async def _page(self, page: SnapshotPage) -> None:
        snapshot_id = self._snapshot()
        await self._settle(keep=self.pipeline.settings.pages_in_flight - 1)
        self.pipeline._offending = _names(page.items)
        task = asyncio.create_task(self._send(page, snapshot_id), name=f"page {self.rtype.key}")
        self.in_flight.append(task)
        before, self.count = self.count, self.count + len(page.items)
        metrics.OBJECTS_SNAPSHOTTED.labels(self.rtype.key).inc(len(page.items))
        if before // PROGRESS_EVERY != self.count // PROGRESS_EVERY:
            logger.info("snapshot progress", extra={**self.pipeline._extra, "objects": self.count,
                                                    "per_s": self._rate()})

    async def _send(self, page: SnapshotPage, snapshot_id: str) -> None:
        await self._deliver(lambda: self.sink.snapshot_page(self.rtype, snapshot_id, page.items))
        self.buffer.done(size(page))

    async def _end(self, end: SnapshotEnd) -> None:
        snapshot_id = self._snapshot()
        rv = end.resource_version
        await self._deliver(
            lambda: self.sink.snapshot_end(self.rtype, snapshot_id, resource_version=rv, count=self.count)
        )
        self.snapshot_id = None
        self._acked(rv)
        logger.info("snapshot complete", extra={**self.pipeline._extra, "objects": self.count,
                                                "seconds": round(time.monotonic() - self.started, 2)})

    def _rate(self) -> int:
        return round(self.count / max(time.monotonic() - self.started, 1e-6))

    async def _changes(self, first: WatchEvent | Bookmark) -> None:
        changes, rv, taken = await self._batch(first)
        if rv is None:  # drained after changes without a position: the next start sees them again
            return
        self.pipeline._offending = _names([change.object for change in changes])
        after = self.pipeline.status.resource_version
        await self._deliver(
            lambda: self.sink.changes(self.rtype, changes, resource_version=rv, after=after)
        )
        self.buffer.done(taken)
        metrics.EVENTS_SHIPPED.labels(self.rtype.key).inc(len(changes))
        self._acked(rv)

    async def _batch(self, first: WatchEvent | Bookmark) -> tuple[list[WatchEvent], str | None, int]:
        """Consecutive changes; ends at a position the informer vouched for. Also returns
        the bytes of the messages it took.

        In composite (per-namespace) mode only a Bookmark carries the type's position, so
        a batch never ends right after a WatchEvent: its Bookmark follows at once.
        """
        settings = self.pipeline.settings
        deadline = time.monotonic() + settings.batch_wait
        changes: list[WatchEvent] = []
        rv: str | None = None
        taken = 0
        message: InformerMessage | None = first
        while True:
            if isinstance(message, WatchEvent):
                changes.append(message)
                rv = None if self.composite else message.resource_version
                taken += size(message)
            elif isinstance(message, Bookmark):
                rv = message.resource_version
                taken += size(message)
            elif message is not None:
                self.pending = message  # a snapshot message ends the batch
                break
            full = len(changes) >= settings.batch_max or time.monotonic() >= deadline
            if full and rv is not None:
                break
            wait = None if rv is None else max(0.0, deadline - time.monotonic())
            message = await self.buffer.get(wait=wait)
            if message is None and (rv is not None or self.buffer.finished):
                break
        return changes, rv, taken

    def _snapshot(self) -> str:
        if self.snapshot_id is None:
            raise RuntimeError("snapshot page without a snapshot start")
        return self.snapshot_id

    def _acked(self, rv: str) -> None:
        self.pipeline.status.resource_version = rv

    async def _deliver(self, call: Callable[[], Awaitable[T]]) -> T:
        return await self.pipeline._deliver(call, buffer=self.buffer)


def _names(objects: Sequence[AnyObject]) -> str:
    """A short list of object names for a rejection log line."""
    names = []
    for obj in objects[:20]:
        if isinstance(obj, RawObject):
            names.append(f"{obj.namespace or ''}/{obj.name}")
            continue
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            names.append(f"{meta.get('namespace') or ''}/{meta.get('name')}")
    return ",".join(names) + (" ..." if len(objects) > 20 else "")
