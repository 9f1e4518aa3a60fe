"""Turn what a member cluster sent into rows the store can write, or refuse it whole.

Every check names the offending item (its position in the batch and, when known, its
namespace/name) so that a refused batch can be found and fixed; nothing of a refused
batch is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from agent.events import ResourceType
from agent.prune import prune

MAX_OBJECT_BYTES = 3 * 1024 * 1024
EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})
ChangeKind = Literal["ADDED", "MODIFIED", "DELETED"]


class BadInput(ValueError):
    """A batch was refused; the message names the offending item."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Row:
    """One object as the store keeps it. ``object`` is the pruned object, orjson-encoded."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    owner_uid: str | None
    labels: dict[str, str]
    created_at: datetime | None
    deleted_at: datetime | None
    object: bytes

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    type: Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
    row: Row | None  # None for BOOKMARK
    resource_version: str


def decode_json(data: bytes, *, what: str) -> Any:
    """Parse a JSON document, naming the position of the first error."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"{what}: invalid JSON: {exc}") from exc


def _where(index: int, obj: Mapping[str, Any] | None) -> str:
    meta = obj.get("metadata") if obj is not None else None
    if isinstance(meta, Mapping):
        ns, name = meta.get("namespace"), meta.get("name")
        if isinstance(name, str):
            return f"item {index} ({ns}/{name})" if isinstance(ns, str) and ns else f"item {index} ({name})"
    return f"item {index}"


def _string(meta: Mapping[str, Any], field: str, where: str, *, required: bool) -> str | None:
    value = meta.get(field)
    if value is None or value == "":
        if required:
            raise BadInput(f"{where}: metadata.{field} is missing")
        return None
    if not isinstance(value, str):
        raise BadInput(f"{where}: metadata.{field} must be a string, not {type(value).__name__}")
    return value


def _timestamp(meta: Mapping[str, Any], field: str, where: str) -> datetime | None:
    value = _string(meta, field, where, required=False)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadInput(f"{where}: metadata.{field} is not an RFC 3339 time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise BadInput(f"{where}: metadata.{field} has no time zone: {value!r}")
    return parsed


def _labels(meta: Mapping[str, Any], where: str) -> dict[str, str]:
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise BadInput(f"{where}: metadata.labels must map strings to strings")
    return labels


def _owner_uid(meta: Mapping[str, Any], where: str) -> str | None:
    owners = meta.get("ownerReferences") or []
    if not isinstance(owners, list):
        raise BadInput(f"{where}: metadata.ownerReferences must be a list")
    for ref in owners:
        if isinstance(ref, dict) and ref.get("controller") is True:
            uid = ref.get("uid")
            return uid if isinstance(uid, str) else None
    return None


NUL_ESCAPE = b"\\u0000"  # how orjson writes U+0000 inside a JSON string
REPLACEMENT = "\ufffd"


def scrub_nul(value: Any) -> Any:
    """``value`` with U+0000 replaced in every string (keys included).

    PostgreSQL text and jsonb cannot hold U+0000, yet it is valid JSON and any user who may
    create a ConfigMap can put one in a value. Refusing such an object would stop the whole
    type from syncing (every relist would carry it again), so the character is replaced.
    """
    if isinstance(value, str):
        return value.replace("\x00", REPLACEMENT)
    if isinstance(value, dict):
        return {scrub_nul(k): scrub_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_nul(v) for v in value]
    return value


def to_row(obj: Any, *, rtype: ResourceType, index: int, keep_secret_data: bool) -> Row:
    """Validate one object of ``rtype`` and build its row."""
    if not isinstance(obj, dict):
        raise BadInput(f"item {index}: an object must be a JSON object, not {type(obj).__name__}")
    where = _where(index, obj)
    encoded = _encode(obj, where, keep_secret_data=keep_secret_data)
    if NUL_ESCAPE in encoded:  # rare: pay for the walk only when needed
        _refuse_nul_identity(obj, where)
        obj = scrub_nul(obj)
        encoded = _encode(obj, where, keep_secret_data=keep_secret_data)
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise BadInput(f"{where}: kind is missing")
    if kind != rtype.kind:
        raise BadInput(f"{where}: kind {kind!r} does not belong in {rtype.key} (expected {rtype.kind!r})")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise BadInput(f"{where}: metadata is missing")
    name = _string(meta, "name", where, required=True)
    uid = _string(meta, "uid", where, required=True)
    rv = _string(meta, "resourceVersion", where, required=True)
    namespace = _string(meta, "namespace", where, required=rtype.namespaced) or ""
    assert name is not None and uid is not None and rv is not None
    if len(encoded) > MAX_OBJECT_BYTES:
        raise BadInput(f"{where}: object is {len(encoded)} bytes, over the {MAX_OBJECT_BYTES} byte limit")
    return Row(
        namespace=namespace if rtype.namespaced else "",
        name=name,
        uid=uid,
        resource_version=rv,
        owner_uid=_owner_uid(meta, where),
        labels=_labels(meta, where),
        created_at=_timestamp(meta, "creationTimestamp", where),
        deleted_at=_timestamp(meta, "deletionTimestamp", where),
        object=encoded,
    )


def _encode(obj: dict[str, Any], where: str, *, keep_secret_data: bool) -> bytes:
    try:
        return orjson.dumps(prune(obj, keep_secret_data=keep_secret_data))
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits
        raise BadInput(f"{where}: cannot be stored as JSON: {exc}") from exc


def _refuse_nul_identity(obj: dict[str, Any], where: str) -> None:
    """Names, uids and versions are never rewritten: a U+0000 there is refused."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return
    for field in ("name", "namespace", "uid", "resourceVersion"):
        value = meta.get(field)
        if isinstance(value, str) and "\x00" in value:
            raise BadInput(f"{where}: metadata.{field} contains U+0000")


def to_events(
    raw: Sequence[Any], *, rtype: ResourceType, keep_secret_data: bool = False
) -> list[Event]:
    """Validate watch events ``{"type": ..., "object": {...}}`` in order."""
    events: list[Event] = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise BadInput(f"item {index}: an event must be a JSON object")
        kind = item.get("type")
        if kind not in EVENT_TYPES:
            raise BadInput(f"item {index}: unknown event type {kind!r}")
        obj = item.get("object")
        if kind == "BOOKMARK":
            events.append(Event(type="BOOKMARK", row=None, resource_version=_bookmark_rv(obj, index)))
            continue
        row = to_row(obj, rtype=rtype, index=index, keep_secret_data=keep_secret_data)
        events.append(Event(type=kind, row=row, resource_version=row.resource_version))
    return events


def _bookmark_rv(obj: Any, index: int) -> str:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    if not isinstance(rv, str) or not rv:
        raise BadInput(f"item {index}: BOOKMARK without metadata.resourceVersion")
    return rv


def to_rows(
    items: Sequence[Any], *, rtype: ResourceType, keep_secret_data: bool = False
) -> list[Row]:
    rows = [to_row(obj, rtype=rtype, index=i, keep_secret_data=keep_secret_data)
            for i, obj in enumerate(items)]
    seen: set[tuple[str, str]] = set()
    for index, row in enumerate(rows):
        if row.key in seen:
            raise BadInput(f"item {index} ({row.namespace}/{row.name}): appears twice in one page")
        seen.add(row.key)
    return rows
