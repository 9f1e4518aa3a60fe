"""Pack snapshot pages and change batches into request bodies the syncer accepts.

A body is at most ``protocol.MAX_BODY_BYTES`` of JSON and ``protocol.MAX_ITEMS`` objects
(:mod:`agent.protocol`). A page of 500 large objects does not fit, so a page or batch is
sent as several bodies when it must be, each object encoded once:

* A snapshot page becomes several pages of the same snapshot: pages may commit in any
  order, and the snapshot's end counts every object, so nothing else changes.
* A batch becomes several batches that commit one after another. Each but the last ends at
  a checkpoint of its own, where the watch could resume: its last event's resourceVersion,
  or for a composite (per-namespace) checkpoint the one it follows with every namespace
  moved to its last event there. A batch is only split where that checkpoint moves on (a
  checkpoint equal to the committed one would read as a replay).

An object whose JSON is over ``protocol.MAX_OBJECT_BYTES`` cannot be stored anyway: in its
place goes its identity (``protocol.omitted``), so the syncer reports it and a snapshot's
count still adds up; a deletion needs only the identity, and is sent with it alone.

A body is a :class:`Body`: the objects' own JSON (:class:`agent.events.RawObject`) between
the bytes that frame it, never joined into one copy, so that sending a page costs no memory
beyond the page (:mod:`agent.push` streams the parts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from agent import protocol
from agent.events import AnyObject, WatchEvent, as_raw
from kube.resources import ResourceType

_COMMA = 1


@dataclass(frozen=True, slots=True)
class Body:
    """A request body as the parts it is the concatenation of."""

    parts: tuple[bytes, ...]

    @property
    def size(self) -> int:
        return sum(len(part) for part in self.parts)

    def join(self) -> bytes:
        return b"".join(self.parts)


def _separated(items: Sequence[bytes], separator: bytes = b",") -> list[bytes]:
    parts: list[bytes] = []
    for index, item in enumerate(items):
        if index:
            parts.append(separator)
        parts.append(item)
    return parts


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    max_body: int = protocol.MAX_BODY_BYTES
    max_items: int = protocol.MAX_ITEMS
    max_object: int = protocol.MAX_OBJECT_BYTES


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, kw_only=True, slots=True)
class ChangeBody:
    """One batch of a split one: its body and the checkpoints it follows and reaches."""

    body: Body
    after: str | None
    resource_version: str

    @property
    def data(self) -> bytes:
        return self.body.join()


def _head(rtype: ResourceType) -> bytes:
    return b'{"type":' + orjson.dumps(protocol.type_to_dict(rtype))


def page_bodies(rtype: ResourceType, items: Sequence[AnyObject],
                limits: Limits = DEFAULT_LIMITS) -> list[bytes]:
    """The bodies of ``/snapshots/{id}/pages`` requests that carry ``items``."""
    return [body.join() for body in page_parts(rtype, items, limits)]


def page_parts(rtype: ResourceType, items: Sequence[AnyObject],
               limits: Limits = DEFAULT_LIMITS) -> list[Body]:
    """:func:`page_bodies` as :class:`Body` parts."""
    kept: list[bytes] = []
    omitted: list[bytes] = []
    for item in map(as_raw, items):
        if len(item.json) > limits.max_object:
            omitted.append(orjson.dumps(protocol.omitted(item.decode(), len(item.json))))
        else:
            kept.append(item.json)
    head = _head(rtype) + b',"items":['
    fixed = len(head) + len(b'],"omitted":[]}')
    parts = [(raw, False) for raw in kept] + [(raw, True) for raw in omitted]
    bodies = []
    for start, end in _spans([len(raw) for raw, _ in parts], fixed=fixed, limits=limits):
        chunk = parts[start:end]
        pieces = [head, *_separated([raw for raw, o in chunk if not o]), b"]"]
        stand_ins = [raw for raw, o in chunk if o]
        if stand_ins:
            pieces += [b',"omitted":[', *_separated(stand_ins), b"]"]
        bodies.append(Body((*pieces, b"}")))
    return bodies


def _spans(sizes: Sequence[int], *, fixed: int, limits: Limits) -> list[tuple[int, int]]:
    """Consecutive [start, end) ranges whose parts fit a body (one part always fits: it
    is at most ``max_object``, well under ``max_body``)."""
    spans, start, used = [], 0, fixed
    for index, size in enumerate(sizes):
        if index > start and (used + size + _COMMA > limits.max_body or index - start >= limits.max_items):
            spans.append((start, index))
            start, used = index, fixed
        used += size + _COMMA
    spans.append((start, len(sizes)))
    return spans


def _event(change: WatchEvent, limits: Limits) -> tuple[bytes, ...]:
    obj = as_raw(change.object)
    if len(obj.json) <= limits.max_object:
        return b'{"type":"' + change.type.encode() + b'","object":', obj.json, b"}"
    stand_in = protocol.omitted(obj.decode(), len(obj.json))
    if change.type == "DELETED":  # a deletion is applied from the identity alone
        identity = {"apiVersion": obj.api_version, "kind": stand_in["kind"], "metadata": stand_in["metadata"]}
        return (b'{"type":"DELETED","object":' + orjson.dumps(identity) + b"}",)
    return (b'{"type":"' + change.type.encode() + b'","omitted":' + orjson.dumps(stand_in) + b"}",)


def change_bodies(rtype: ResourceType, changes: Sequence[WatchEvent], *, resource_version: str,
                  after: str | None, limits: Limits = DEFAULT_LIMITS) -> list[ChangeBody]:
    """The bodies of ``/changes`` requests that carry ``changes`` up to ``resource_version``."""
    events = [_event(change, limits) for change in changes]
    sizes = [sum(len(part) for part in event) for event in events]
    # The type, both checkpoints (a split's are about as long as the last) and the keys.
    fixed = len(_head(rtype)) + 64 + 2 * max(len(orjson.dumps(resource_version)), len(orjson.dumps(after)))
    total = fixed + sum(size + _COMMA for size in sizes)
    if total <= limits.max_body and len(events) <= limits.max_items:
        return [_change_body(rtype, events, after=after, resource_version=resource_version)]
    checkpoints = _checkpoints(changes, after=after, final=resource_version)
    bodies: list[ChangeBody] = []
    start, used, follows = 0, fixed, after
    for index, size in enumerate(sizes):
        full = used + size + _COMMA > limits.max_body or index - start >= limits.max_items
        reached = checkpoints[index - 1] if index > start else None
        if full and reached is not None and reached not in (follows, resource_version):
            bodies.append(_change_body(rtype, events[start:index], after=follows, resource_version=reached))
            start, used, follows = index, fixed, reached
        used += size + _COMMA
    bodies.append(_change_body(rtype, events[start:], after=follows, resource_version=resource_version))
    return bodies


def _change_body(rtype: ResourceType, events: Sequence[tuple[bytes, ...]], *, after: str | None,
                 resource_version: str) -> ChangeBody:
    head = _head(rtype) + b',"resourceVersion":' + orjson.dumps(resource_version)
    if after is not None:
        head += b',"after":' + orjson.dumps(after)
    parts = [head + b',"events":[']
    for index, event in enumerate(events):
        if index:
            parts.append(b",")
        parts.extend(event)
    parts.append(b"]}")
    return ChangeBody(body=Body(tuple(parts)), after=after, resource_version=resource_version)


def _checkpoints(changes: Sequence[WatchEvent], *, after: str | None, final: str) -> list[str | None]:
    """Where the watch stands after each change (None: nowhere it could resume from)."""
    objects = [as_raw(change.object) for change in changes]
    if not final.startswith("{"):
        return [obj.resource_version for obj in objects]
    rvs = _namespaces(after)
    if rvs is None:
        return [None] * len(changes)
    positions: list[str | None] = []
    for obj in objects:
        if obj.namespace in rvs and obj.resource_version:
            rvs[obj.namespace] = obj.resource_version
        positions.append(orjson.dumps({"namespaces": dict(sorted(rvs.items()))}).decode())
    return positions


def _namespaces(checkpoint: str | None) -> dict[str, str] | None:
    """The per-namespace positions of a composite checkpoint (as ``agent.informer`` writes
    it), or None."""
    if not checkpoint or not checkpoint.startswith("{"):
        return None
    try:
        namespaces = orjson.loads(checkpoint).get("namespaces")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(namespaces, dict) or not all(isinstance(v, str) for v in namespaces.values()):
        return None
    return dict(namespaces)
