"""The agent's memory: objects kept as their JSON, bounds in bytes."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Sequence

import pytest

from agent.buffer import Budget, MessageBuffer, Overflowed
from agent.events import AnyObject, RawObject, SnapshotPage
from agent.kubeclient import KubeClient
from agent.runner import Runner
from agent.selection import Selection
from kube.resources import ResourceType
from tests.agent.conftest import Cluster
from tests.agent.recording import RecordingSink
from tests.factories import pod


def test_raw_objects_keep_their_json_in_an_allocation_of_its_size() -> None:
    obj = pod("a", 7, data="x" * 100_000)
    tracemalloc.start()
    try:
        raw = RawObject.encode(obj)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # orjson's own buffer for this object is over a megabyte.
    assert len(raw.json) < held < len(raw.json) + 4096
    assert (raw.kind, raw.namespace, raw.name, raw.resource_version) == ("Pod", "default", "a", "7")
    assert raw["metadata"]["uid"] == obj["metadata"]["uid"] == raw.uid and dict(raw) == obj


def _page(count: int, size: int = 1000) -> SnapshotPage:
    return SnapshotPage(items=[RawObject(b"x" * size, name=f"o{n}") for n in range(count)])


async def test_the_buffer_is_bounded_by_bytes() -> None:
    buffer = MessageBuffer(1000, max_bytes=4000)
    await buffer.put(_page(2))  # 2 x (1000 + overhead)
    blocked = asyncio.create_task(buffer.put(_page(2)))
    await asyncio.sleep(0.05)
    assert not blocked.done(), "over the bytes: it waits for the shipper"
    assert isinstance(await buffer.get(), SnapshotPage)
    await asyncio.wait_for(blocked, 5)
    await buffer.set_sink_failing(True)
    with pytest.raises(Overflowed):
        await buffer.put(_page(2))  # the sink is failing: dropped instead
    big = MessageBuffer(1000, max_bytes=100)
    await big.put(_page(1))  # an empty buffer lets one message in, however big


async def test_the_budget_is_shared_and_every_type_progresses() -> None:
    budget = Budget(3100)
    first, second = MessageBuffer(1000, budget=budget), MessageBuffer(1000, budget=budget)
    await first.put(_page(2))
    await asyncio.wait_for(second.put(_page(1)), 5)  # holds nothing yet: let in over the budget
    assert budget.used > budget.limit
    blocked = asyncio.create_task(second.put(_page(1)))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    taken = await first.get()
    assert taken is not None and not blocked.done(), "taken is still held until acknowledged"
    first.done(2 * (1000 + 512))
    await asyncio.wait_for(blocked, 5)
    second.close()
    first.close()
    assert budget.used == 0


class StalledSink(RecordingSink):
    """Takes pages and never acknowledges them."""

    async def snapshot_page(self, rtype: ResourceType, snapshot_id: str, items: Sequence[AnyObject]) -> None:
        self.changed.set()
        await asyncio.Event().wait()


async def test_a_runner_s_pipelines_share_its_budget(cluster: Cluster, kube: KubeClient) -> None:
    for i in range(3):
        await cluster.configmap(f"cm{i}")
    sink = StalledSink()
    runner = Runner(client=kube, sink=sink, selection=Selection(include=("configmaps", "namespaces")))
    task = asyncio.create_task(runner.run())
    try:
        await sink.wait_for(lambda: runner.budget.used > 0)  # the page the sink sits on
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert runner.budget.used == 0, "what the stopped pipelines held was let go"
