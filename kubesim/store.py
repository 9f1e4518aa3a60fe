"""Object storage with one global resourceVersion counter and a watch history.

Like etcd behind kube-apiserver, every write (create, update, delete) takes the
next value of a single counter; an object's ``resourceVersion`` is the value of
its last write, and a delete consumes a value too, which the DELETED event's
object carries
(https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions).

Objects are kept as their serialized bytes plus the few parsed fields that
selectors and paging need, so 100k objects of several KB stay cheap and a list
page is a concatenation of bytes. Each type keeps a bounded history of its
changes (by count and by age); the history serves watches from a
resourceVersion and reconstructs the state at an older resourceVersion for
consistent continuation pages and ``resourceVersionMatch=Exact`` lists. Below
the history's floor the answer is 410 Expired, as after an etcd compaction.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from kube.changes import ChangeType
from kube.resources import ResourceType
from kubesim.selectors import extract_fields

JSON = dict[str, Any]


@dataclass(slots=True, eq=False)
class Entry:
    """One stored version of one object."""

    key: str
    namespace: str
    name: str
    uid: str
    rv: int
    labels: dict[str, str]
    fields: dict[str, str]
    raw: bytes


@dataclass(slots=True, eq=False)
class Event:
    """A change; for DELETED, ``new`` is the tombstone carrying the delete's RV."""

    rv: int
    type: ChangeType
    old: Entry | None
    new: Entry
    at: float
    _line: bytes | None = None

    def line(self) -> bytes:
        """The watch line, serialized once and shared by every watcher it is offered to
        at once (the store drops it then: kept in the history, it would double what
        the history holds; a watch replaying the history makes it again)."""
        if self._line is None:
            self._line = b'{"type":"%s","object":%s}\n' % (self.type.encode(), self.new.raw)
        return self._line


class Sink(Protocol):
    def offer(self, event: Event) -> None: ...

    def close(self) -> None: ...


def storage_key(namespace: str, name: str) -> str:
    """Keys sort like etcd's ``/registry/<resource>/<namespace>/<name>``."""
    return f"{namespace}/{name}" if namespace else name


def namespace_range(namespace: str) -> tuple[str, str]:
    # "0" is the byte after "/", so [ns/, ns0) is exactly the namespace.
    return f"{namespace}/", f"{namespace}0"


class TooOld(Exception):
    """The requested resourceVersion is below the kept history."""

    def __init__(self, requested: int, floor: int) -> None:
        super().__init__(f"too old resource version: {requested} ({floor})")
        self.requested = requested
        self.floor = floor


@dataclass(slots=True)
class Overlay:
    """The state at ``rv`` for keys changed since: key -> entry then (or None)."""

    rv: int
    upto: int
    before: dict[str, Entry | None] = field(default_factory=dict)
    present: list[str] = field(default_factory=list)


class TypeStore:
    """All objects of one resource type, their history and their watchers."""

    def __init__(self, rtype: ResourceType, floor: int) -> None:
        self.rtype = rtype
        self.objects: dict[str, Entry] = {}
        self.keys: list[str] = []
        self.history: list[Event] = []
        self.floor = floor
        self.sinks: set[Sink] = set()
        self._overlays: dict[int, Overlay] = {}

    def get(self, namespace: str, name: str) -> Entry | None:
        return self.objects.get(storage_key(namespace, name))

    def key_range(self, namespace: str) -> tuple[int, int]:
        if not namespace:
            return 0, len(self.keys)
        low, high = namespace_range(namespace)
        return bisect_left(self.keys, low), bisect_left(self.keys, high)

    def events_after(self, rv: int) -> list[Event]:
        """Events with resourceVersion > rv; TooOld if history does not reach back."""
        if rv < self.floor:
            raise TooOld(rv, self.floor)
        return self.history[bisect_right(self.history, rv, key=lambda e: e.rv) :]

    def overlay(self, rv: int) -> Overlay:
        """State differences between ``rv`` and now, cached and extended lazily."""
        if rv < self.floor:
            raise TooOld(rv, self.floor)
        ov = self._overlays.get(rv)
        if ov is None:
            if len(self._overlays) >= 16:
                self._overlays.pop(next(iter(self._overlays)))
            ov = self._overlays[rv] = Overlay(rv, rv)
        for event in self.events_after(ov.upto):
            if event.new.key not in ov.before:
                ov.before[event.new.key] = event.old
                if event.old is not None:
                    ov.present.insert(bisect_left(ov.present, event.new.key), event.new.key)
            ov.upto = event.rv
        return ov

    def iter_at(self, rv: int | None, namespace: str, start: str) -> Iterator[Entry]:
        """Entries in key order from ``start`` as of ``rv`` (None: current)."""
        low, high = self.key_range(namespace)
        low = max(low, bisect_left(self.keys, start)) if start else low
        if rv is None:
            for index in range(low, high):
                yield self.objects[self.keys[index]]
            return
        yield from self._merge_at(self.overlay(rv), namespace, start, low, high)

    def _merge_at(
        self, ov: Overlay, namespace: str, start: str, low: int, high: int
    ) -> Iterator[Entry]:
        # Merge current keys with keys deleted since rv; the overlay wins for
        # both. Callers consume this without awaiting, so the lists cannot
        # change underneath.
        ns_high = namespace_range(namespace)[1] if namespace else "\U0010ffff"
        lo = max(start, namespace_range(namespace)[0]) if namespace else start
        extra = ov.present
        i, j = low, bisect_left(extra, lo)
        while True:
            cur = self.keys[i] if i < high else None
            ext = extra[j] if j < len(extra) and extra[j] < ns_high else None
            if cur is None and ext is None:
                return
            if ext is None or (cur is not None and cur <= ext):
                key = cur
                i += 1
                j += ext == cur
            else:
                key = ext
                j += 1
            assert key is not None
            if key in ov.before:
                old = ov.before[key]
                if old is not None:
                    yield old
            else:
                yield self.objects[key]

    def count_at(self, rv: int | None, namespace: str, after: str) -> int:
        """How many entries sort after ``after`` at ``rv`` (remainingItemCount)."""
        low, high = self.key_range(namespace)
        count = high - max(low, bisect_right(self.keys, after))
        if rv is None:
            return count
        ns_low, ns_high = namespace_range(namespace) if namespace else ("", "\U0010ffff")
        for key, old in self.overlay(rv).before.items():
            if after < key and ns_low <= key < ns_high:
                count += (old is not None) - (key in self.objects)
        return count


class Store:
    """Every type's objects behind one resourceVersion counter."""

    def __init__(self, history_max_events: int = 50_000, history_seconds: float = 300.0) -> None:
        self.rv = 1
        self.types: dict[str, TypeStore] = {}
        self.history_max_events = history_max_events
        self.history_seconds = history_seconds
        self._last_time_trim = 0.0
        self.write_waiters: list[Any] = []

    def ensure_type(self, rtype: ResourceType) -> TypeStore:
        tstore = self.types.get(rtype.key)
        if tstore is None:
            tstore = self.types[rtype.key] = TypeStore(rtype, self.rv)
        return tstore

    def drop_type(self, key: str) -> None:
        tstore = self.types.pop(key, None)
        if tstore is not None:
            for sink in list(tstore.sinks):
                sink.close()

    def _entry(self, tstore: TypeStore, obj: JSON, rv: int) -> Entry:
        meta = obj["metadata"]
        meta["resourceVersion"] = str(rv)
        namespace = meta.get("namespace", "") or ""
        name = meta["name"]
        return Entry(
            key=storage_key(namespace, name),
            namespace=namespace,
            name=name,
            uid=meta.get("uid", ""),
            rv=rv,
            labels=dict(meta.get("labels") or {}),
            fields=extract_fields(tstore.rtype.kind, obj),
            raw=orjson.dumps(obj),
        )

    def write(self, tstore: TypeStore, obj: JSON, record: bool = True) -> Entry:
        """Create or replace ``obj`` (its metadata already complete but the RV)."""
        self.rv += 1
        entry = self._entry(tstore, obj, self.rv)
        old = tstore.objects.get(entry.key)
        tstore.objects[entry.key] = entry
        if old is None:
            tstore.keys.insert(bisect_left(tstore.keys, entry.key), entry.key)
        if record:
            self._record(tstore, Event(self.rv, "MODIFIED" if old else "ADDED", old, entry, 0.0))
        else:
            tstore.floor = self.rv
        return entry

    def write_copy(self, tstore: TypeStore, template: Entry, obj: JSON) -> Entry:
        """Store ``obj``, a copy of another store's ``template`` that differs from it only
        in ``metadata.uid`` (and the resourceVersion set here), without history.

        The copy shares the template's key, name, namespace, labels and selectable fields
        (no entry's are ever changed in place): a hundred clusters cloned from one pay for
        those once."""
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        entry = Entry(
            key=template.key,
            namespace=template.namespace,
            name=template.name,
            uid=obj["metadata"].get("uid", ""),
            rv=self.rv,
            labels=template.labels,
            fields=template.fields,
            raw=orjson.dumps(obj),
        )
        if tstore.objects.get(entry.key) is None:
            tstore.keys.insert(bisect_left(tstore.keys, entry.key), entry.key)
        tstore.objects[entry.key] = entry
        tstore.floor = self.rv
        return entry

    def preview(self, tstore: TypeStore, obj: JSON, rv: int | None) -> Entry:
        """What a write would store, without storing it (``dryRun=All``)."""
        entry = self._entry(tstore, obj, rv or 0)
        if rv is None:
            # A dry-run create has no resourceVersion yet.
            del obj["metadata"]["resourceVersion"]
            entry.raw = orjson.dumps(obj)
        return entry

    def remove(self, tstore: TypeStore, key: str) -> Entry | None:
        """Delete ``key``; the returned tombstone carries the delete's RV."""
        old = tstore.objects.pop(key, None)
        if old is None:
            return None
        del tstore.keys[bisect_left(tstore.keys, key)]
        self.rv += 1
        obj = orjson.loads(old.raw)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        # The last state with the delete's version: labels and fields are the old ones.
        tombstone = Entry(old.key, old.namespace, old.name, old.uid, self.rv, old.labels,
                          old.fields, orjson.dumps(obj))
        self._record(tstore, Event(self.rv, "DELETED", old, tombstone, 0.0))
        return tombstone

    def _record(self, tstore: TypeStore, event: Event) -> None:
        event.at = time.monotonic()
        tstore.history.append(event)
        self._trim(tstore, event.at)
        for sink in list(tstore.sinks):
            sink.offer(event)
        event._line = None
        for waiter in self.write_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.write_waiters.clear()

    def _trim(self, tstore: TypeStore, now: float) -> None:
        # Trim in batches: deleting from the front of a list is a memmove.
        limit = self.history_max_events
        if len(tstore.history) > limit + max(limit // 8, 1):
            self._cut(tstore, len(tstore.history) - limit)
        if now - self._last_time_trim > min(1.0, self.history_seconds / 2):
            self._last_time_trim = now
            for other in self.types.values():
                self._trim_age(other, now)

    def expire(self, tstore: TypeStore) -> None:
        """Drop history older than the window now, before serving from it."""
        self._trim_age(tstore, time.monotonic())

    def _trim_age(self, tstore: TypeStore, now: float) -> None:
        horizon = now - self.history_seconds
        count = bisect_left(tstore.history, horizon, key=lambda e: e.at)
        if count:
            self._cut(tstore, count)

    @staticmethod
    def _cut(tstore: TypeStore, count: int) -> None:
        tstore.floor = max(tstore.floor, tstore.history[count - 1].rv)
        del tstore.history[:count]
        for rv in [rv for rv in tstore._overlays if rv < tstore.floor]:
            del tstore._overlays[rv]

    def compact(self) -> int:
        """Forget all history: older resourceVersions now answer 410 Expired."""
        for tstore in self.types.values():
            if tstore.history:
                self._cut(tstore, len(tstore.history))
            tstore.floor = self.rv
            tstore._overlays.clear()
        return self.rv
