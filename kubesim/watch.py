"""WATCH streams.

https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes,
#watch-bookmarks and #streaming-lists:

- from a resourceVersion: the changes after it, no synthetic events; below the
  history window the stream is HTTP 200 with a single ERROR event carrying a
  410 Expired Status, then closes;
- ``resourceVersion`` unset or ``"0"``: synthetic ADDED events for the current
  objects, then changes;
- ``sendInitialEvents=true``: synthetic ADDED events, then a BOOKMARK annotated
  ``k8s.io/initial-events-end: "true"``;
- ``allowWatchBookmarks=true``: periodic BOOKMARK events whose object holds only
  ``metadata.resourceVersion``;
- selectors: an object that stops matching is sent as DELETED, one that starts
  matching as ADDED (the watch cache's filtering).

Each event's line is serialized once and shared by every plain watcher; a
watcher whose queue outgrows its bound is closed, as kube-apiserver closes
unresponsive watchers.

Delivery is batched: a write only appends its line to each watcher's queue and wakes
the watcher's stream once (a future, not a task per wait), which then sends whatever
the writes of that turn of the event loop queued in one chunk. So the cost per event
and watcher is an append, and the task switches and socket writes are per batch. The
plain watchers of a type, woken by the same writes, send the same batch: it is joined
once for all of them (:class:`SharedJoins`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from kube.changes import ChangeType
from kube.resources import ResourceType
from kube.status import status_body
from kubesim.selectors import Selector
from kubesim.store import Entry, Event

JSON = dict[str, Any]
Transform = Callable[[JSON], JSON]
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def expired_line(requested: int, floor: int) -> bytes:
    status = status_body(410, "Expired", f"too old resource version: {requested} ({floor})")
    return orjson.dumps({"type": "ERROR", "object": status}) + b"\n"


def default_timeout() -> float:
    """kube-apiserver's watch timeout when none is asked: minRequestTimeout x [1, 2)."""
    return 1800.0 * (1.0 + random.random())


class Watcher:
    """One watch connection's queue of encoded lines (a store ``Sink``)."""

    def __init__(
        self,
        rtype: ResourceType,
        namespace: str,
        labels: Selector,
        fields: Selector,
        max_queue: int,
        transform: Transform | None = None,
    ) -> None:
        self.rtype = rtype
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.filtered = not (labels.empty() and fields.empty())
        self.max_queue = max_queue
        # Re-shapes each object (Table, PartialObjectMetadata) for this watcher.
        self.transform = transform
        # Every event goes to this watcher as the store's shared line (the fast path).
        self.plain = not self.filtered and not namespace and transform is None
        self.pending: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        # One timer serves many waits: re-arming it on each of them (hundreds a second on
        # a busy type) would fill the loop's timer heap with cancelled timers.
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.overflowed = False
        # Events at or below this RV are not sent (a watch from a future RV).
        self.after = 0

    def _matches(self, entry: Entry | None) -> bool:
        if entry is None:
            return False
        if self.namespace and entry.namespace != self.namespace:
            return False
        return self.labels.matches(entry.labels) and self.fields.matches(entry.fields)

    def _event_type(self, event: Event) -> ChangeType | None:
        if not self.filtered and not self.namespace:
            return event.type
        was = self._matches(event.old)
        if event.type == "DELETED":
            return "DELETED" if was else None
        now = self._matches(event.new)
        if was and now:
            return "MODIFIED"
        if now:
            return "ADDED"
        return "DELETED" if was else None

    def encode(self, kind: ChangeType, entry: Entry, event: Event | None = None) -> bytes:
        if self.transform is not None:
            obj = self.transform(orjson.loads(entry.raw))
            return orjson.dumps({"type": kind, "object": obj}) + b"\n"
        if event is not None and kind == event.type:
            return event.line()
        return b'{"type":"%s","object":%s}\n' % (kind.encode(), entry.raw)

    def offer(self, event: Event) -> None:
        if self.closed or event.rv <= self.after:
            return
        if self.plain:
            self.pending.append(event.line())
        else:
            kind = self._event_type(event)
            if kind is None:
                return
            self.pending.append(self.encode(kind, event.new, event))
        if len(self.pending) > self.max_queue:
            self.overflowed = True
            self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109
        """Until lines are queued or the watcher is closed, at most ``timeout`` seconds
        (maybe less: the caller checks what it waits for again)."""
        if self.pending or self.closed:
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + timeout
        if self._timer is None or self._timer.when() > due:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(due, self._ring)
        self._waiter = loop.create_future()
        await self._waiter

    def _ring(self) -> None:
        self._timer = None
        self._wake()

    def stop_timer(self) -> None:
        """The stream ended: nothing waits any more."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def initial(self, entries: Iterable[Entry]) -> list[Entry]:
        """The current objects this watcher selects, for synthetic ADDED events."""
        return [e for e in entries if self._matches(e)]

    def replay(self, events: Iterable[Event]) -> None:
        for event in events:
            self.offer(event)

    def take(self) -> list[bytes]:
        lines, self.pending = self.pending, []
        return lines

    def close(self) -> None:
        self.closed = True
        self._wake()

    def bookmark(self, rv: int, initial_end: bool = False) -> bytes:
        meta: JSON = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        obj = {"kind": self.rtype.kind, "apiVersion": self.rtype.api_version, "metadata": meta}
        return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"


class Pacer:
    """When to end the stream and when the next bookmark is due."""

    def __init__(self, timeout: float, bookmark_interval: float | None) -> None:
        now = time.monotonic()
        self.deadline = now + timeout
        self.interval = bookmark_interval
        self.next_bookmark = now + bookmark_interval if bookmark_interval else None

    def wait_time(self) -> float:
        now = time.monotonic()
        due = self.deadline if self.next_bookmark is None else min(self.deadline, self.next_bookmark)
        return max(due - now, 0.0)

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def bookmark_due(self) -> bool:
        if self.next_bookmark is None or self.interval is None:
            return False
        now = time.monotonic()
        if now < self.next_bookmark:
            return False
        self.next_bookmark = now + self.interval
        return True


class SharedJoins:
    """The last few batches joined, for plain watchers sending the same batch.

    A plain watcher queues the shared line of every event of its type after its start,
    so two plain watchers' batches with the same first and last line (the same objects,
    by identity: kept alive here, their ids are not reused) and the same length hold the
    same lines. Other watchers' batches must not be joined here."""

    KEEP = 4

    def __init__(self) -> None:
        self._joined: dict[tuple[int, int, int], tuple[bytes, bytes, bytes]] = {}

    def join(self, lines: list[bytes]) -> bytes:
        if not lines:
            return b""
        key = (id(lines[0]), id(lines[-1]), len(lines))
        found = self._joined.get(key)
        if found is not None:
            return found[2]
        joined = b"".join(lines)
        if len(self._joined) >= self.KEEP:
            del self._joined[next(iter(self._joined))]
        self._joined[key] = (lines[0], lines[-1], joined)
        return joined


async def wait_for_lines(watcher: Watcher, pacer: Pacer, *, at_most: float | None = None) -> None:
    """Until lines are queued, the watcher is closed, or a bookmark or the end is due (or
    ``at_most`` seconds pass)."""
    wait = pacer.wait_time() if at_most is None else min(pacer.wait_time(), at_most)
    await watcher.wait(wait)
