"""The agent's relist causes, its /metrics listener, and its drain on shutdown."""

from __future__ import annotations

import asyncio

import aiohttp

from agent import metrics
from agent.events import WatchEvent
from agent.kubeclient import KubeClient
from agent.sink import SinkNeedsSnapshot
from kube.resources import ResourceType
from tests.agent.conftest import Cluster
from tests.agent.recording import RecordingSink
from tests.agent.test_pipeline import pipeline, running
from tests.scraping import scrape


async def test_relists_carry_their_cause_to_the_sink_and_to_metrics(cluster: Cluster,
                                                                    kube: KubeClient) -> None:
    await cluster.configmap("a")
    sink = RecordingSink()
    async with metrics.serving("127.0.0.1", 0) as url, aiohttp.ClientSession() as session:
        before = await scrape(session, url)
        async with running(pipeline(kube, sink)):
            await sink.wait_for(lambda: sink.count("snapshot_end") == 1)
            sink.fail_next["changes"] = SinkNeedsSnapshot("the syncer lost it")
            await cluster.configmap("b")
            await sink.wait_for(lambda: sink.count("snapshot_end") == 2)
        after = await scrape(session, url)
    # (410 Gone's cause, "expired", is tests/agent/test_informer.py's.)
    assert [reason for _key, reason in sink.reasons] == ["initial", "sink_needs_snapshot"]
    for reason in ("initial", "sink_needs_snapshot"):
        series = {"resource": "configmaps", "reason": reason}
        assert after.value("kubepedia_agent_relists_total", **series) == \
            before.value("kubepedia_agent_relists_total", **series) + 1, reason


class HeldSink(RecordingSink):
    """Holds the first batch of changes until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def changes(self, rtype: ResourceType, changes: list[WatchEvent], *, resource_version: str,
                      after: str | None = None) -> None:
        if not self.release.is_set():
            self.holding.set()
            await self.release.wait()
        await super().changes(rtype, changes, resource_version=resource_version, after=after)


async def test_drain_delivers_what_the_buffer_holds(cluster: Cluster, kube: KubeClient) -> None:
    sink = HeldSink()
    sync = pipeline(kube, sink)
    task = asyncio.create_task(sync.run(checkpoint=None))
    try:
        await sink.wait_for(lambda: sink.count("snapshot_end") == 1)
        await cluster.configmap("first")
        await asyncio.wait_for(sink.holding.wait(), 30)
        await cluster.configmap("second")
        await cluster.configmap("third")
        # Polled: the informer puts the events into the buffer on its own time.
        while sync._buffer is None or sync._buffer.size < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        draining = asyncio.create_task(sync.drain())
        sink.release.set()
        await asyncio.wait_for(draining, 30)
        await asyncio.wait_for(task, 30)  # ends by itself, not cancelled
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sink.names("configmaps") == ["first", "second", "third"]
    assert sync.status.resource_version == sink.committed["configmaps"]


async def test_drain_gives_up_on_a_sink_that_does_not_answer(cluster: Cluster, kube: KubeClient) -> None:
    """What is held then is not lost (the next start resumes from the committed checkpoint):
    the shutdown ends at once instead of retrying until the process is killed."""
    sink = HeldSink()
    sync = pipeline(kube, sink)
    task = asyncio.create_task(sync.run(checkpoint=None))
    try:
        await sink.wait_for(lambda: sink.count("snapshot_end") == 1)
        await cluster.configmap("first")
        await asyncio.wait_for(sink.holding.wait(), 30)
        await cluster.configmap("second")
        # Polled: the informer puts the event into the buffer on its own time.
        while sync._buffer is None or sync._buffer.size < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        sink.busy = True  # every call from now on: SinkBusy
        draining = asyncio.create_task(sync.drain())
        sink.release.set()
        await asyncio.wait_for(draining, 30)
        await asyncio.wait_for(task, 30)  # ends by itself, not cancelled
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "second" not in sink.names("configmaps")
