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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from agent import protocol
from agent.events import KubeObject, WatchEvent
from kube.resources import ResourceType

_COMMA = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    max_body: int = protocol.MAX_BODY_BYTES
    max_items: int = protocol.MAX_ITEMS
    max_object: int = protocol.MAX_OBJECT_BYTES


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, kw_only=True, slots=True)
class ChangeBody:
    """One batch of a split one: its body and the checkpoints it follows and reaches."""

    data: bytes
    after: str | None
    resource_version: str


def _head(rtype: ResourceType) -> bytes:
    return b'{"type":' + orjson.dumps(protocol.type_to_dict(rtype))


def page_bodies(rtype: ResourceType, items: Sequence[KubeObject],
                limits: Limits = DEFAULT_LIMITS) -> list[bytes]:
    """The bodies of ``/snapshots/{id}/pages`` requests that carry ``items``."""
    kept: list[bytes] = []
    omitted: list[bytes] = []
    for item in items:
        raw = orjson.dumps(item)
        if len(raw) > limits.max_object:
            omitted.append(orjson.dumps(protocol.omitted(item, len(raw))))
        else:
            kept.append(raw)
    head = _head(rtype) + b',"items":['
    fixed = len(head) + len(b'],"omitted":[]}')
    parts = [(raw, False) for raw in kept] + [(raw, True) for raw in omitted]
    bodies = []
    for start, end in _spans([len(raw) for raw, _ in parts], fixed=fixed, limits=limits):
        chunk = parts[start:end]
        body = head + b",".join(raw for raw, o in chunk if not o) + b"]"
        stand_ins = [raw for raw, o in chunk if o]
        if stand_ins:
            body += b',"omitted":[' + b",".join(stand_ins) + b"]"
        bodies.append(body + b"}")
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


def _event(change: WatchEvent, limits: Limits) -> bytes:
    raw = orjson.dumps(change.object)
    if len(raw) <= limits.max_object:
        return b'{"type":"' + change.type.encode() + b'","object":' + raw + b"}"
    stand_in = protocol.omitted(change.object, len(raw))
    if change.type == "DELETED":  # a deletion is applied from the identity alone
        identity = {"apiVersion": change.object.get("apiVersion"), "kind": stand_in["kind"],
                    "metadata": stand_in["metadata"]}
        return b'{"type":"DELETED","object":' + orjson.dumps(identity) + b"}"
    return b'{"type":"' + change.type.encode() + b'","omitted":' + orjson.dumps(stand_in) + b"}"


def change_bodies(rtype: ResourceType, changes: Sequence[WatchEvent], *, resource_version: str,
                  after: str | None, limits: Limits = DEFAULT_LIMITS) -> list[ChangeBody]:
    """The bodies of ``/changes`` requests that carry ``changes`` up to ``resource_version``."""
    events = [_event(change, limits) for change in changes]
    # The type, both checkpoints (a split's are about as long as the last) and the keys.
    fixed = len(_head(rtype)) + 64 + 2 * max(len(orjson.dumps(resource_version)), len(orjson.dumps(after)))
    total = fixed + sum(len(e) + _COMMA for e in events)
    if total <= limits.max_body and len(events) <= limits.max_items:
        return [_change_body(rtype, events, after=after, resource_version=resource_version)]
    checkpoints = _checkpoints(changes, after=after, final=resource_version)
    bodies: list[ChangeBody] = []
    start, used, follows = 0, fixed, after
    for index, event in enumerate(events):
        full = used + len(event) + _COMMA > limits.max_body or index - start >= limits.max_items
        reached = checkpoints[index - 1] if index > start else None
        if full and reached is not None and reached not in (follows, resource_version):
            bodies.append(_change_body(rtype, events[start:index], after=follows, resource_version=reached))
            start, used, follows = index, fixed, reached
        used += len(event) + _COMMA
    bodies.append(_change_body(rtype, events[start:], after=follows, resource_version=resource_version))
    return bodies


def _change_body(rtype: ResourceType, events: Sequence[bytes], *, after: str | None,
                 resource_version: str) -> ChangeBody:
    data = _head(rtype) + b',"resourceVersion":' + orjson.dumps(resource_version)
    if after is not None:
        data += b',"after":' + orjson.dumps(after)
    data += b',"events":[' + b",".join(events) + b"]}"
    return ChangeBody(data=data, after=after, resource_version=resource_version)


def _checkpoints(changes: Sequence[WatchEvent], *, after: str | None, final: str) -> list[str | None]:
    """Where the watch stands after each change (None: nowhere it could resume from)."""
    if not final.startswith("{"):
        return [str((c.object.get("metadata") or {}).get("resourceVersion") or "") or None for c in changes]
    rvs = _namespaces(after)
    if rvs is None:
        return [None] * len(changes)
    positions: list[str | None] = []
    for change in changes:
        meta = change.object.get("metadata") or {}
        namespace, rv = meta.get("namespace"), meta.get("resourceVersion")
        if namespace in rvs and isinstance(rv, str) and rv:
            rvs[namespace] = rv
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
