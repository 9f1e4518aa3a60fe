"""A Sink that records calls and keeps the state a store would, for pipeline tests."""

from __future__ import annotations

import asyncio
from typing import Any

from agent.events import KubeObject, RelistReason, WatchEvent
from agent.sink import SinkBusy, SinkNeedsSnapshot, SinkRejected
from kube.resources import ResourceType


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []  # (method, type key)
        self.committed: dict[str, str] = {}
        self.objects: dict[str, dict[tuple[str, str], KubeObject]] = {}
        self.removed: list[str] = []
        self.busy = False
        self.fail_next: dict[str, Exception] = {}
        self.changed = asyncio.Event()
        self._snapshots: dict[str, tuple[str, dict[tuple[str, str], KubeObject]]] = {}
        self._ids = 0
        self.reasons: list[tuple[str, RelistReason]] = []  # (type key, why) of each snapshot start

    def _enter(self, method: str, rtype: ResourceType | None) -> None:
        self.calls.append((method, rtype.key if rtype else ""))
        self.changed.set()
        if self.busy:
            raise SinkBusy("busy", retry_after=0.02)
        failure = self.fail_next.pop(method, None)
        if failure is not None:
            raise failure

    def count(self, method: str, key: str | None = None) -> int:
        return sum(1 for m, k in self.calls if m == method and (key is None or k == key))

    def names(self, key: str) -> list[str]:
        return sorted(name for _ns, name in self.objects.get(key, {}))

    async def checkpoints(self) -> dict[str, str]:
        self._enter("checkpoints", None)
        return dict(self.committed)

    async def snapshot_start(self, rtype: ResourceType, *, reason: RelistReason = "initial") -> str:
        self._enter("snapshot_start", rtype)
        self.reasons.append((rtype.key, reason))
        self._ids += 1
        snapshot_id = f"s{self._ids}"
        self._snapshots[rtype.key] = (snapshot_id, {})
        return snapshot_id

    async def snapshot_page(self, rtype: ResourceType, snapshot_id: str, items: list[KubeObject]) -> None:
        self._enter("snapshot_page", rtype)
        current = self._snapshots.get(rtype.key)
        if current is None or current[0] != snapshot_id:
            raise SinkNeedsSnapshot(snapshot_id)
        current[1].update({_ident(obj): obj for obj in items})

    async def snapshot_end(
        self, rtype: ResourceType, snapshot_id: str, *, resource_version: str, count: int
    ) -> None:
        self._enter("snapshot_end", rtype)
        current = self._snapshots.pop(rtype.key, None)
        if current is None or current[0] != snapshot_id:
            raise SinkNeedsSnapshot(snapshot_id)
        assert count == len(current[1])
        self.objects[rtype.key] = current[1]
        self._commit(rtype, resource_version)

    async def changes(
        self, rtype: ResourceType, changes: list[WatchEvent], *, resource_version: str,
        after: str | None = None,
    ) -> None:
        self._enter("changes", rtype)
        objects = self.objects.setdefault(rtype.key, {})
        for change in changes:
            if change.object["metadata"]["name"] == "poison":
                raise SinkRejected("poison object")
            if change.type == "DELETED":
                objects.pop(_ident(change.object), None)
            else:
                objects[_ident(change.object)] = change.object
        self._commit(rtype, resource_version)

    async def remove_type(self, rtype: ResourceType) -> None:
        self._enter("remove_type", rtype)
        self.objects.pop(rtype.key, None)
        self.committed.pop(rtype.key, None)
        self.removed.append(rtype.key)
        self.changed.set()

    def _commit(self, rtype: ResourceType, resource_version: str) -> None:
        self.committed[rtype.key] = resource_version
        self.changed.set()

    async def wait_for(self, condition: Any, *, within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


def _ident(obj: KubeObject) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])
