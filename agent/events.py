"""What an informer tells its consumer: the vocabulary shared by the agent, the wire
protocol and the syncer's ingest core.

An informer yields, for one resource type, an endless sequence of:

* ``SnapshotStart``: a fresh LIST (or streaming list) begins; every object that is not
  in the pages up to the matching ``SnapshotEnd`` no longer exists.
* ``SnapshotPage``: a page of objects of the snapshot, in order.
* ``SnapshotEnd``: the snapshot is complete as of ``resource_version``.
* ``WatchEvent``: one watch event (ADDED, MODIFIED, DELETED) after the snapshot.
* ``Bookmark``: nothing changed, but the stream is now at ``resource_version``.

The consumer checkpoints the last ``resource_version`` it committed; an informer started
with that checkpoint resumes the watch from it instead of listing again.

The informer's objects are :class:`RawObject`: the agent only passes objects on, and held as
their JSON they take a fifth of the memory their decoded form does (a 4 KB pod decodes into
about 20 KB of Python objects). Sinks also take decoded objects (``KubeObject``), which
tests and older callers build.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import orjson

from kube.changes import ChangeType

KubeObject = dict[str, Any]


class RawObject(Mapping[str, Any]):
    """An object as the JSON the agent forwards, with the fields the agent reads (its
    identity) kept beside it.

    As a mapping it reads like the decoded object, decoding the JSON at each access: that is
    for tests and rare paths; the agent's own paths use the attributes and :attr:`json`.
    An identity field that is absent or not a string is ``None`` (a resourceVersion is
    read as the informer reads it: any value but an empty one, as text).
    """

    __slots__ = ("api_version", "json", "kind", "name", "namespace", "resource_version", "uid")

    def __init__(self, json: bytes, *, api_version: str | None = None, kind: str | None = None,
                 namespace: str | None = None, name: str | None = None, uid: str | None = None,
                 resource_version: str | None = None) -> None:
        self.json = json
        self.api_version = api_version
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.resource_version = resource_version

    @classmethod
    def encode(cls, obj: KubeObject) -> RawObject:
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        rv = str(meta.get("resourceVersion") or "") or None
        return cls(exact(orjson.dumps(obj)), api_version=_text(obj.get("apiVersion")),
                   kind=_text(obj.get("kind")), namespace=_text(meta.get("namespace")),
                   name=_text(meta.get("name")), uid=_text(meta.get("uid")), resource_version=rv)

    def decode(self) -> KubeObject:
        decoded: KubeObject = orjson.loads(self.json)
        return decoded

    def __getitem__(self, key: str) -> Any:
        return self.decode()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.decode())

    def __len__(self) -> int:
        return len(self.decode())

    def __repr__(self) -> str:
        return f"RawObject({self.kind}/{self.namespace or ''}/{self.name}@{self.resource_version}, " \
               f"{len(self.json)} bytes)"


AnyObject = KubeObject | RawObject


def as_raw(obj: AnyObject) -> RawObject:
    return obj if isinstance(obj, RawObject) else RawObject.encode(obj)


def as_dict(obj: AnyObject) -> KubeObject:
    return obj.decode() if isinstance(obj, RawObject) else obj


def exact(data: bytes) -> bytes:
    """``data`` in an allocation of its own size. orjson returns its output in the buffer it
    grew while writing: 8 KB for a 3 KB pod, 32 KB for a 3 KB string (room for escapes). What
    is kept for long must not keep that room too."""
    return bytes(memoryview(data))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# Why a snapshot (a relist) starts; counted by the agent and the syncer (``/metrics``):
# initial: the sink holds no checkpoint of the type (its first sync, or a type new to the
#   cluster); checkpoint_unusable: the one it holds does not fit (the namespaces changed);
# expired: the member cluster answered 410 Gone; sink_needs_snapshot: the sink lost the
#   snapshot or a batch did not follow its checkpoint; rejected: the sink refused data;
# overflow: the buffer was dropped while the sink was unavailable.
RelistReason = Literal["initial", "checkpoint_unusable", "expired", "sink_needs_snapshot", "rejected",
                       "overflow"]
RELIST_REASONS: frozenset[str] = frozenset(get_args(RelistReason))


@dataclass(frozen=True, kw_only=True, slots=True)
class SnapshotStart:
    reason: RelistReason = "initial"


@dataclass(frozen=True, kw_only=True, slots=True)
class SnapshotPage:
    items: list[RawObject]

    @property
    def size(self) -> int:
        """Bytes of JSON the page holds."""
        return sum(len(item.json) for item in self.items)


@dataclass(frozen=True, kw_only=True, slots=True)
class SnapshotEnd:
    resource_version: str


@dataclass(frozen=True, kw_only=True, slots=True)
class WatchEvent:
    """An event of a member cluster's watch that changes an object (a bookmark is a
    :class:`Bookmark`)."""

    type: ChangeType
    object: AnyObject

    @property
    def resource_version(self) -> str:
        if isinstance(self.object, RawObject):
            return self.object.resource_version or ""
        return str(self.object["metadata"]["resourceVersion"])


@dataclass(frozen=True, kw_only=True, slots=True)
class Bookmark:
    resource_version: str


InformerMessage = SnapshotStart | SnapshotPage | SnapshotEnd | WatchEvent | Bookmark
