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
        self.pending: list[bytes] = []
        self.wakeup = asyncio.Event()
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
        kind = self._event_type(event)
        if kind is None:
            return
        self.pending.append(self.encode(kind, event.new, event))
        if len(self.pending) > self.max_queue:
            self.overflowed = True
            self.close()
        self.wakeup.set()

    def initial(self, entries: Iterable[Entry]) -> list[Entry]:
        """The current objects this watcher selects, for synthetic ADDED events."""
        return [e for e in entries if self._matches(e)]

    def replay(self, events: Iterable[Event]) -> None:
        for event in events:
            self.offer(event)

    def take(self) -> list[bytes]:
        lines, self.pending = self.pending, []
        self.wakeup.clear()
        return lines

    def close(self) -> None:
        self.closed = True
        self.wakeup.set()

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


async def wait_for_lines(watcher: Watcher, pacer: Pacer, *, at_most: float | None = None) -> None:
    """Until lines are queued, the watcher is closed, or a bookmark or the end is due (or
    ``at_most`` seconds pass)."""
    if watcher.pending or watcher.closed:
        return
    wait = pacer.wait_time() if at_most is None else min(pacer.wait_time(), at_most)
    try:
        await asyncio.wait_for(watcher.wakeup.wait(), wait)
    except TimeoutError:
        pass
