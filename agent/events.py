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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kube.changes import ChangeType

KubeObject = dict[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class SnapshotStart:
    pass


@dataclass(frozen=True, kw_only=True, slots=True)
class SnapshotPage:
    items: list[KubeObject]


@dataclass(frozen=True, kw_only=True, slots=True)
class SnapshotEnd:
    resource_version: str


@dataclass(frozen=True, kw_only=True, slots=True)
class WatchEvent:
    """An event of a member cluster's watch that changes an object (a bookmark is a
    :class:`Bookmark`)."""

    type: ChangeType
    object: KubeObject

    @property
    def resource_version(self) -> str:
        return str(self.object["metadata"]["resourceVersion"])


@dataclass(frozen=True, kw_only=True, slots=True)
class Bookmark:
    resource_version: str


InformerMessage = SnapshotStart | SnapshotPage | SnapshotEnd | WatchEvent | Bookmark
