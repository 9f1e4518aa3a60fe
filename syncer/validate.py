"""Turn what a member cluster sent into rows the store can write.

Two kinds of problem, two answers:

* The request itself is malformed (an event that is not an object or has no known type, a
  bookmark without a version, a page naming one object twice): ``BadInput``. The request is
  refused whole and nothing of it is written; only a broken sender makes these.
* One object cannot be stored (no uid, a name Kubernetes would not allow, a string over its
  limit, the wrong kind, over :data:`MAX_OBJECT_BYTES`, ...): that object is skipped (a
  :class:`Skip` naming it) and the rest is applied. Refusing the request instead would stop
  the whole type: the sender would retry, or list again, and meet the same object forever.

Every message names the item (its position and, when known, namespace/name). The limits
are Kubernetes' own where it has them (https://kubernetes.io/docs/concepts/overview/working-with-objects/names/,
https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set).

They also keep every btree index entry under PostgreSQL's limit (2704 bytes an entry): one
object over it would make PostgreSQL refuse its whole batch. Identities and labels are
bounded in characters, so that an entry of them fits even when every character takes four
bytes (narrowly: the list order's and the label indexes' entries come close to the limit
then). What the expression indexes of :mod:`syncer.migrations` take from the object itself
is bounded here, in bytes: the indexed fields (``spec.nodeName``, ``status.phase``), each
alone and with the identity it is indexed with, and a pod's container images as its report
index holds them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from agent import protocol
from kube.changes import WATCH_EVENT_TYPES, WatchEventType
from kube.prune import prune
from kube.resources import ResourceType

MAX_OBJECT_BYTES = protocol.MAX_OBJECT_BYTES
# Names are DNS subdomains for nearly every type. RBAC's are path segments, which Kubernetes
# does not bound; 253 is what every tool expects, and a longer one is skipped and reported.
MAX_NAME = 253
NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a DNS label
MAX_UID = 128  # a UUID is 36; a static pod's is a 32-character hash
MAX_RESOURCE_VERSION = 128  # etcd revisions are 64-bit integers
MAX_LABELS = 256  # Kubernetes sets no count; objects this labelled do not exist in practice
MAX_LABEL_PREFIX, MAX_LABEL_NAME, MAX_LABEL_VALUE = 253, 63, 63
MAX_TIMESTAMP = 64
MAX_SHOWN = 80  # characters of a name repeated in a message
MAX_CLUSTER = 63  # a cluster name is a DNS label (syncer.registry.check_name)
# Bytes of the values of one btree entry; PostgreSQL refuses an entry over 2704 bytes, its
# header and each value's length and alignment included (at most about 50 bytes here).
MAX_INDEX_ENTRY = 2600
# Fields with an index of their own (resources_field_node_name, resources_field_phase), in
# bytes of PostgreSQL's text of the value: a node name is a DNS subdomain (253 characters),
# a phase a word; a sane value of either is far below.
INDEXED_FIELDS = (("spec", "nodeName"), ("status", "phase"))
MAX_INDEXED_FIELD = 1024
# A pod's report entry (resources_pod_report): cluster, namespace, its images as a text
# array (24 bytes of header, then each image with a 4-byte length, padded to 4 bytes),
# phase (64 characters) and restarts. kube_pod_images counts 4 bytes an image, not the
# padding, so under its limit of 2000 bytes the array can still take 2.4 KB or more.
POD_REPORT_OTHERS = MAX_CLUSTER + MAX_LABEL_NAME + 64 * 4 + 4
POD_IMAGES_COUNTED = 2000  # syncer.migrations.POD_IMAGES_MAX_BYTES: over it, no array at all
POD_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
# Padding adds at most 3 bytes an image to what is counted: up to this many images, the
# array cannot overfill its entry, and a pod's images need not be looked at.
FEW_IMAGES = (MAX_INDEX_ENTRY - POD_REPORT_OTHERS - 24 - POD_IMAGES_COUNTED) // 3
SKIPPED_NAMESPACE = "#skipped"  # no namespace is spelled so: keys of skipped unnamed objects


class BadInput(ValueError):
    """A request was refused whole; the message names the offending item."""


class BadObject(BadInput):
    """One object cannot be stored; it is skipped, the rest of its request applied."""


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
    type: WatchEventType
    row: Row | None  # None for BOOKMARK
    resource_version: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Skip:
    """An object that was not applied. ``key`` is what a snapshot counts it under: its own
    (namespace, name) when those are valid, which also keeps a stored older version from
    being deleted as unseen; else a key no object can have, derived from the page's content
    and the item's position (a replayed page yields the same keys, another page others)."""

    message: str
    key: tuple[str, str] | None = None


@dataclass(kw_only=True, slots=True)
class Page:
    rows: list[Row] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Objects the page held, skipped ones included (what the lister counted)."""
        return len(self.rows) + len(self.skipped)


@dataclass(kw_only=True, slots=True)
class Batch:
    events: list[Event] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


def decode_json(data: bytes, *, what: str) -> Any:
    """Parse a JSON document, naming the position of the first error."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"{what}: invalid JSON: {exc}") from exc


def decode_object(data: bytes, *, what: str) -> dict[str, Any]:
    """Parse a JSON document that must be an object."""
    parsed = decode_json(data, what=what)
    if not isinstance(parsed, dict):
        raise BadInput(f"{what}: expected a JSON object")
    return parsed


def shown(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."


def _where(index: int, obj: Mapping[str, Any] | None) -> str:
    meta = obj.get("metadata") if obj is not None else None
    if isinstance(meta, Mapping):
        ns, name = meta.get("namespace"), meta.get("name")
        if isinstance(name, str):
            if isinstance(ns, str) and ns:
                return f"item {index} ({shown(ns)}/{shown(name)})"
            return f"item {index} ({shown(name)})"
    return f"item {index}"


def _string(meta: Mapping[str, Any], field: str, where: str, *, required: bool, limit: int) -> str | None:
    value = meta.get(field)
    if value is None or value == "":
        if required:
            raise BadObject(f"{where}: metadata.{field} is missing")
        return None
    if not isinstance(value, str):
        raise BadObject(f"{where}: metadata.{field} must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise BadObject(f"{where}: metadata.{field} is {len(value)} characters, over the limit of {limit}")
    if "\x00" in value:  # never rewritten, unlike U+0000 elsewhere (see scrub_nul)
        raise BadObject(f"{where}: metadata.{field} contains U+0000")
    return value


def _name(meta: Mapping[str, Any], where: str) -> str:
    name = _string(meta, "name", where, required=True, limit=MAX_NAME)
    assert name is not None
    if name in (".", "..") or "/" in name or "%" in name:
        raise BadObject(f"{where}: metadata.name {shown(name)!r} is not a name Kubernetes allows")
    return name


def _namespace(meta: Mapping[str, Any], where: str, *, namespaced: bool) -> str:
    if not namespaced:
        return ""
    namespace = _string(meta, "namespace", where, required=True, limit=MAX_LABEL_NAME)
    assert namespace is not None
    if not NAMESPACE_RE.fullmatch(namespace):
        raise BadObject(f"{where}: metadata.namespace {shown(namespace)!r} is not a DNS label")
    return namespace


def _timestamp(meta: Mapping[str, Any], field: str, where: str) -> datetime | None:
    value = _string(meta, field, where, required=False, limit=MAX_TIMESTAMP)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadObject(f"{where}: metadata.{field} is not an RFC 3339 time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise BadObject(f"{where}: metadata.{field} has no time zone: {value!r}")
    return parsed


def _labels(meta: Mapping[str, Any], where: str) -> dict[str, str]:
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise BadObject(f"{where}: metadata.labels must map strings to strings")
    if len(labels) > MAX_LABELS:
        raise BadObject(f"{where}: {len(labels)} labels, over the limit of {MAX_LABELS}")
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if not name or len(name) > MAX_LABEL_NAME or len(prefix) > MAX_LABEL_PREFIX:
            raise BadObject(f"{where}: label key {shown(key)!r} is not a Kubernetes label key"
                            f" (a prefix of at most {MAX_LABEL_PREFIX} characters, a name of at most"
                            f" {MAX_LABEL_NAME})")
        if len(value) > MAX_LABEL_VALUE:
            raise BadObject(f"{where}: label {shown(key)!r} has a value of {len(value)} characters,"
                            f" over the limit of {MAX_LABEL_VALUE}")
    return labels


def _owner_uid(meta: Mapping[str, Any], where: str) -> str | None:
    owners = meta.get("ownerReferences") or []
    if not isinstance(owners, list):
        raise BadObject(f"{where}: metadata.ownerReferences must be a list")
    for ref in owners:
        if isinstance(ref, dict) and ref.get("controller") is True:
            uid = ref.get("uid")
            if not isinstance(uid, str):
                return None
            if len(uid) > MAX_UID:
                raise BadObject(f"{where}: the controller's uid is {len(uid)} characters, over {MAX_UID}")
            return uid
    return None


NUL_ESCAPE = b"\\u0000"  # how orjson writes U+0000 inside a JSON string
REPLACEMENT = "\ufffd"


def scrub_nul(value: Any) -> Any:
    """``value`` with U+0000 replaced in every string (keys included).

    PostgreSQL text and jsonb cannot hold U+0000, yet it is valid JSON and any user who may
    create a ConfigMap can put one in a value. Skipping such an object would hide it for no
    good reason, so the character is replaced.
    """
    if isinstance(value, str):
        return value.replace("\x00", REPLACEMENT)
    if isinstance(value, dict):
        return {scrub_nul(k): scrub_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_nul(v) for v in value]
    return value


def is_secret(rtype: ResourceType) -> bool:
    """Secrets are pruned by the type they were sent as, never by what the object says."""
    return rtype.group == "" and rtype.resource == "secrets"


@dataclass(frozen=True, kw_only=True, slots=True)
class _Identity:
    where: str
    namespace: str
    name: str
    uid: str
    resource_version: str
    meta: dict[str, Any]


def _identity(obj: Any, *, rtype: ResourceType, index: int) -> _Identity:
    if not isinstance(obj, dict):
        raise BadObject(f"item {index}: an object must be a JSON object, not {type(obj).__name__}")
    where = _where(index, obj)
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise BadObject(f"{where}: kind is missing")
    if kind != rtype.kind:
        raise BadObject(f"{where}: kind {shown(kind)!r} does not belong in {rtype.key}"
                        f" (expected {rtype.kind!r})")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise BadObject(f"{where}: metadata is missing")
    name = _name(meta, where)
    uid = _string(meta, "uid", where, required=True, limit=MAX_UID)
    rv = _string(meta, "resourceVersion", where, required=True, limit=MAX_RESOURCE_VERSION)
    namespace = _namespace(meta, where, namespaced=rtype.namespaced)
    assert uid is not None and rv is not None
    return _Identity(where=where, namespace=namespace, name=name, uid=uid, resource_version=rv, meta=meta)


def to_row(obj: Any, *, rtype: ResourceType, index: int, keep_secret_data: bool,
           identity_only: bool = False) -> Row:
    """Validate one object of ``rtype`` and build its row, or raise ``BadObject``.

    ``identity_only`` (a deletion): only what identifies the object is checked and kept.
    """
    ident = _identity(obj, rtype=rtype, index=index)
    if identity_only:
        return Row(namespace=ident.namespace, name=ident.name, uid=ident.uid,
                   resource_version=ident.resource_version, owner_uid=None, labels={},
                   created_at=None, deleted_at=None, object=b"")
    secret = is_secret(rtype)
    encoded = _encode(obj, ident.where, keep_secret_data=keep_secret_data, secret=secret)
    if len(encoded) > MAX_OBJECT_BYTES:
        raise BadObject(f"{ident.where}: object is {len(encoded)} bytes, over the {MAX_OBJECT_BYTES}"
                        " byte limit")
    meta = ident.meta
    if NUL_ESCAPE in encoded:  # rare: pay for the walk only when needed
        obj = scrub_nul(obj)
        meta = obj["metadata"]
        encoded = _encode(obj, ident.where, keep_secret_data=keep_secret_data, secret=secret)
    _indexed_fields(obj, ident, rtype=rtype)
    if rtype.group == "" and rtype.resource == "pods":
        _pod_images(obj, ident)
    return Row(
        namespace=ident.namespace,
        name=ident.name,
        uid=ident.uid,
        resource_version=ident.resource_version,
        owner_uid=_owner_uid(meta, ident.where),
        labels=_labels(meta, ident.where),
        created_at=_timestamp(meta, "creationTimestamp", ident.where),
        deleted_at=_timestamp(meta, "deletionTimestamp", ident.where),
        object=encoded,
    )


def _utf8(text: str) -> int:
    if text.isascii():  # nearly always, and a flag of the string: no encoding
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))  # orjson has refused surrogates by now


def _indexed_fields(obj: dict[str, Any], ident: _Identity, *, rtype: ResourceType) -> None:
    """Each indexed field alone, and in its entry: type, value, namespace, name, cluster."""
    identity = (_utf8(rtype.group) + _utf8(rtype.resource) + _utf8(ident.namespace) + _utf8(ident.name)
                + MAX_CLUSTER)
    for section, key in INDEXED_FIELDS:
        # As ``object #>> '{section,key}'`` finds it: nothing under anything but an object.
        parent = obj.get(section)
        value = parent.get(key) if isinstance(parent, dict) else None
        if value is None:  # absent or JSON null: no entry
            continue
        size = _text_bytes(value, most=MAX_INDEXED_FIELD)
        if size > MAX_INDEXED_FIELD:
            raise BadObject(f"{ident.where}: {section}.{key} takes more than {MAX_INDEXED_FIELD} bytes,"
                            " the limit of an indexed field")
        if size + identity > MAX_INDEX_ENTRY:
            raise BadObject(f"{ident.where}: {section}.{key} ({size} bytes) with the type, namespace and"
                            f" name ({identity} bytes with the cluster's) is over the {MAX_INDEX_ENTRY}"
                            " bytes of an index entry")


def _text_bytes(value: Any, *, most: int) -> int:
    """The bytes of PostgreSQL's text of a jsonb value, or more; counting stops past ``most``.

    A string is its UTF-8. Anything else is JSON text with a space after each ':' and ',',
    and numbers in full (jsonb keeps a number as numeric: 1e300 prints as 301 digits).
    Counted without recursion: nesting as deep as the JSON parser allows must not exhaust
    Python's stack.
    """
    if isinstance(value, str):
        return _utf8(value)
    total, stack = 0, [value]
    while stack and total <= most:
        item = stack.pop()
        if isinstance(item, dict):
            total += 2 + 4 * len(item)  # braces, ': ' and ', '
            stack += [*item, *item.values()]
        elif isinstance(item, list):
            total += 2 + 2 * len(item)
            stack += item
        else:
            total += _scalar_bytes(item)
    return total


def _scalar_bytes(value: Any) -> int:
    """A string quoted and escaped, a number as numeric prints it, true, false or null."""
    text = orjson.dumps(value)
    if isinstance(value, float) and text != b"null":  # orjson writes NaN and infinities as null
        return len(format(Decimal(text.decode()), "f"))
    return len(text)


def _pod_images(obj: dict[str, Any], ident: _Identity) -> None:
    """The pod's images as kube_pod_images (syncer.migrations) keeps them: the same
    containers, the same strings, its count and the array's real size."""
    spec = obj.get("spec")
    lists = [spec.get(key) for key in POD_CONTAINER_LISTS] if isinstance(spec, dict) else []
    containers = [c for found in lists if isinstance(found, list) for c in found]
    if len(containers) <= FEW_IMAGES:
        return
    images = [c["image"] for c in containers if isinstance(c, dict) and isinstance(c.get("image"), str)]
    sizes = [_utf8(image) + 4 for image in images]
    stored = 24 + sum((size + 3) // 4 * 4 for size in sizes)
    if sum(sizes) <= POD_IMAGES_COUNTED and stored + POD_REPORT_OTHERS > MAX_INDEX_ENTRY:
        raise BadObject(f"{ident.where}: its container images take {stored} bytes in the pod report's"
                        f" index, over the {MAX_INDEX_ENTRY - POD_REPORT_OTHERS} it can hold")


def _encode(obj: dict[str, Any], where: str, *, keep_secret_data: bool, secret: bool) -> bytes:
    try:
        return orjson.dumps(prune(obj, keep_secret_data=keep_secret_data, secret=secret))
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits
        raise BadObject(f"{where}: cannot be stored as JSON: {exc}") from exc


def _own_key(obj: Any, *, rtype: ResourceType) -> tuple[str, str] | None:
    """The object's (namespace, name) if both are valid, else None."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return None
    try:
        return (_namespace(meta, "", namespaced=rtype.namespaced), _name(meta, ""))
    except BadObject:
        return None


def _digest(value: Any) -> str:
    try:
        content = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        content = repr(value).encode("utf-8", "replace")
    return hashlib.sha256(content).hexdigest()


def _omitted(entry: Any, *, rtype: ResourceType, index: int) -> Skip:
    """An object the sender left out for its size (``agent.protocol.omitted``)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int):
        raise BadInput(f"item {index}: an omitted object needs its metadata and size")
    where = _where(index, entry)
    return Skip(message=f"{where}: object is {entry['bytes']} bytes, over the {MAX_OBJECT_BYTES}"
                        " byte limit (not sent)",
                key=_own_key(entry, rtype=rtype))


def to_events(raw: Sequence[Any], *, rtype: ResourceType, keep_secret_data: bool = False) -> Batch:
    """Validate watch events ``{"type": ..., "object" | "omitted": {...}}`` in order."""
    batch = Batch()
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise BadInput(f"item {index}: an event must be a JSON object")
        kind = item.get("type")
        if kind not in WATCH_EVENT_TYPES:
            raise BadInput(f"item {index}: unknown event type {shown(str(kind))!r}")
        obj = item.get("object")
        if kind == "BOOKMARK":
            batch.events.append(Event(type="BOOKMARK", row=None, resource_version=_bookmark_rv(obj, index)))
            continue
        if "omitted" in item and obj is None:
            batch.skipped.append(_omitted(item["omitted"], rtype=rtype, index=index))
            continue
        try:
            row = to_row(obj, rtype=rtype, index=index, keep_secret_data=keep_secret_data,
                         identity_only=kind == "DELETED")
        except BadObject as exc:
            batch.skipped.append(Skip(message=str(exc)))
            continue
        batch.events.append(Event(type=kind, row=row, resource_version=row.resource_version))
    return batch


def _bookmark_rv(obj: Any, index: int) -> str:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    if not isinstance(rv, str) or not rv:
        raise BadInput(f"item {index}: BOOKMARK without metadata.resourceVersion")
    if len(rv) > protocol.MAX_CHECKPOINT_BYTES:
        raise BadInput(f"item {index}: BOOKMARK resourceVersion over {protocol.MAX_CHECKPOINT_BYTES}"
                       " characters")
    return rv


def to_rows(items: Sequence[Any], *, rtype: ResourceType, keep_secret_data: bool = False,
            omitted: Sequence[Any] = ()) -> Page:
    """Validate a snapshot page (and the objects its sender omitted, numbered after it)."""
    page = Page()
    seen: set[tuple[str, str]] = set()
    unkeyed: list[int] = []

    def take(index: int, key: tuple[str, str] | None) -> None:
        if key is None:
            unkeyed.append(len(page.skipped) - 1)
        elif key in seen:
            raise BadInput(f"item {index} ({shown(key[0])}/{shown(key[1])}): appears twice in one page")
        else:
            seen.add(key)

    for index, obj in enumerate(items):
        try:
            row = to_row(obj, rtype=rtype, index=index, keep_secret_data=keep_secret_data)
        except BadObject as exc:
            page.skipped.append(Skip(message=str(exc), key=_own_key(obj, rtype=rtype)))
            take(index, page.skipped[-1].key)
            continue
        take(index, row.key)
        page.rows.append(row)
    for offset, entry in enumerate(omitted):
        page.skipped.append(_omitted(entry, rtype=rtype, index=len(items) + offset))
        take(len(items) + offset, page.skipped[-1].key)
    if unkeyed:
        digest = _digest([items, omitted])
        for position in unkeyed:
            skip = page.skipped[position]
            page.skipped[position] = Skip(message=skip.message,
                                          key=(SKIPPED_NAMESPACE, f"{digest}-{position}"))
    return page
