"""The agent's memory: objects kept as their JSON, bounds in bytes, flat as clusters grow."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.buffer import Budget, MessageBuffer, Overflowed, size
from agent.events import AnyObject, RawObject, RelistReason, SnapshotPage, WatchEvent
from agent.informer import InformerSettings
from agent.kubeclient import Connection, KubeClient
from agent.pipeline import Pipeline, PipelineSettings
from agent.runner import Runner
from agent.selection import Selection
from kube.resources import ResourceType
from tests.agent.conftest import Cluster
from tests.agent.recording import RecordingSink
from tests.e2e.procs import start_sim
from tests.factories import PODS, pod


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
    first.done(size(taken))
    await asyncio.wait_for(blocked, 5)
    second.close()
    first.close()
    assert budget.used == 0


async def test_budget_lets_waiters_in_first_come_first_served() -> None:
    """A release lets in the waiters it makes room for, in order: a small message that asks
    later does not overtake a large one waiting (which would starve large messages)."""
    # Room for two pages of three and one of four: what is left once the third holder's
    # page is acknowledged.
    budget = Budget(2 * size(_page(3)) + size(_page(4)))
    holders = [MessageBuffer(1000, budget=budget) for _ in range(3)]
    for holder in holders:  # each holds something, so none may pass over the limit
        await holder.put(_page(3))
    assert budget.used == 3 * size(_page(3))
    large = asyncio.create_task(holders[0].put(_page(4)))
    await asyncio.sleep(0.01)
    small = asyncio.create_task(holders[1].put(_page(1)))
    await asyncio.sleep(0.01)
    taken = await holders[2].get()
    assert taken is not None
    holders[2].done(size(taken) - 1)  # room for the small message, not yet for the large one
    await asyncio.sleep(0.05)
    assert not large.done() and not small.done(), "the small message waits its turn"
    holders[2].done(1)  # the third holder holds nothing now: room for the large one
    await asyncio.wait_for(large, 5)
    await asyncio.sleep(0.05)
    assert not small.done()
    first = await holders[0].get()
    assert first is not None
    holders[0].done(size(first))
    await asyncio.wait_for(small, 5)
    for holder in holders:
        holder.close()
    assert budget.used == 0


async def test_a_cancelled_wait_gives_its_place_up() -> None:
    budget = Budget(11_000)
    first, second = MessageBuffer(1000, budget=budget), MessageBuffer(1000, budget=budget)
    await first.put(_page(3))
    await second.put(_page(3))
    blocked = asyncio.create_task(second.put(_page(4)))  # does not fit
    await asyncio.sleep(0.01)
    behind = asyncio.create_task(first.put(_page(1)))  # fits, but waits its turn
    await asyncio.sleep(0.05)
    assert not behind.done()
    blocked.cancel()
    await asyncio.wait_for(behind, 5)  # the cancelled waiter no longer holds the queue up
    assert budget.used == 2 * size(_page(3)) + size(_page(1))
    first.close()
    second.close()
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


# --- the informer path against a real member cluster (kubesim, in its own process) --------------

class SlowSink:
    """Acknowledges pages a little slower than they come, so that what waits piles up."""

    def __init__(self) -> None:
        self.objects = 0
        self.ended = asyncio.Event()

    async def checkpoints(self) -> dict[str, str]:
        return {}

    async def snapshot_start(self, rtype: ResourceType, *, reason: RelistReason = "initial") -> str:
        return "s"

    async def snapshot_page(self, rtype: ResourceType, snapshot_id: str, items: Sequence[AnyObject]) -> None:
        await asyncio.sleep(0.005)
        self.objects += len(items)

    async def snapshot_end(self, rtype: ResourceType, snapshot_id: str, *, resource_version: str,
                           count: int) -> None:
        self.ended.set()

    async def changes(self, rtype: ResourceType, changes: list[WatchEvent], *, resource_version: str,
                      after: str | None = None) -> None:
        pass

    async def remove_type(self, rtype: ResourceType) -> None:
        pass


PAGE_BYTES = 64 * 1024
SMALL_BOUNDS = PipelineSettings(buffer_bytes=256 * 1024, in_flight_bytes=1024 * 1024)


async def peak_while_syncing(url: str, count: int, *, streaming: bool) -> int:
    """Bytes the agent's path allocated at most beyond what it held before (tracemalloc: this
    process only, the member cluster runs in its own)."""
    settings = InformerSettings(page_bytes=PAGE_BYTES, streaming_lists=streaming)
    async with KubeClient(connection=Connection.plain(url)) as client:
        sink = SlowSink()
        pipeline = Pipeline(client=client, sink=sink, rtype=PODS, informer_settings=settings,  # type: ignore[arg-type]
                            settings=SMALL_BOUNDS)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            task = asyncio.create_task(pipeline.run(checkpoint=None))
            await asyncio.wait_for(sink.ended.wait(), 120)
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert sink.objects == count
    return peak


@pytest.mark.slow
async def test_memory_does_not_grow_with_the_cluster(tmp_path: Path) -> None:
    small, large = await asyncio.gather(
        start_sim(tmp_path, "small", generate="pods=500", seed=1),
        start_sim(tmp_path, "large", generate="pods=5000", seed=2))  # 20 MB of pods
    try:
        for streaming in (True, False):
            held = [await peak_while_syncing(sim.url, count, streaming=streaming)
                    for sim, count in ((small, 500), (large, 5000))]
            assert held[1] < 1.5 * held[0], (streaming, held)
            # Bounded by the settings: the budget (1 MiB, the buffer within it), the page being
            # put, a LIST page while it is decoded (17 x 64 KiB), the connection's buffers.
            # Bounded by counts only, 5,000 pods take 5.5 MB streamed and 40 MB listed.
            assert held[1] < 2.5 * 1024 * 1024, (streaming, held)
    finally:
        await asyncio.gather(small.proc.stop(), large.proc.stop())
