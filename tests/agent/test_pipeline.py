"""Pipeline and runner behaviour with a recording sink and a real kubesim."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agent import metrics
from agent.events import KubeObject
from agent.informer import InformerSettings
from agent.kubeclient import KubeClient
from agent.pipeline import Pipeline, PipelineSettings
from agent.runner import Runner
from agent.selection import Selection
from agent.sink import SinkNeedsSnapshot, SinkUnavailable
from kube.resources import ResourceType
from tests.agent.conftest import CONFIGMAPS, Cluster
from tests.agent.recording import RecordingSink

FAST = PipelineSettings(
    buffer_limit=5,
    batch_wait=0.01,
    sink_backoff_base=0.01,
    sink_backoff_cap=0.05,
    reject_backoff_base=0.05,
    reject_backoff_cap=0.1,
)
PAGED = InformerSettings(page_size=3, streaming_lists=False)


@asynccontextmanager
async def running(pipeline: Pipeline, checkpoint: str | None = None) -> AsyncIterator[None]:
    task = asyncio.create_task(pipeline.run(checkpoint=checkpoint))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _overflows() -> float:
    return float(metrics.BUFFER_OVERFLOWS.labels(CONFIGMAPS.key)._value.get())


def pipeline(kube: KubeClient, sink: RecordingSink, **kw: object) -> Pipeline:
    return Pipeline(client=kube, sink=sink, rtype=CONFIGMAPS, informer_settings=PAGED, settings=FAST, **kw)  # type: ignore[arg-type]


async def test_snapshot_changes_and_resume(cluster: Cluster, kube: KubeClient) -> None:
    for i in range(4):
        await cluster.configmap(f"cm{i}")
    sink = RecordingSink()
    sync = pipeline(kube, sink)
    async with running(sync):
        await sink.wait_for(lambda: sink.count("snapshot_end") == 1)
        assert sink.names("configmaps") == ["cm0", "cm1", "cm2", "cm3"]
        await cluster.delete_configmap("cm0")
        await cluster.configmap("cm4")
        await sink.wait_for(lambda: "cm4" in sink.names("configmaps"))
        assert sink.names("configmaps") == ["cm1", "cm2", "cm3", "cm4"]
        assert sync.status.resource_version == sink.committed["configmaps"]
    checkpoint = sink.committed["configmaps"]
    await cluster.configmap("cm5")
    cluster.server.sim.stats.reset()
    async with running(pipeline(kube, sink), checkpoint=checkpoint):
        await sink.wait_for(lambda: "cm5" in sink.names("configmaps"))
    assert sink.count("snapshot_start") == 1 and cluster.requests("list") == 0


async def test_overflow_while_busy_drops_and_resnapshots(cluster: Cluster, kube: KubeClient) -> None:
    for i in range(12):
        await cluster.configmap(f"cm{i}")
    sink = RecordingSink()
    sink.busy = True
    sync = pipeline(kube, sink)
    async with running(sync):
        # The snapshot (12 objects) cannot fit a 5-object buffer while the sink is busy.
        await sink.wait_for(lambda: sink.count("checkpoints") >= 2)
        assert cluster.requests("list") <= 3  # the informer was stopped, not relisting
        assert sync.status.sink_error is not None
        sink.busy = False
        await cluster.configmap("cm12")
        await sink.wait_for(lambda: len(sink.names("configmaps")) == 13)
    assert sink.count("snapshot_end") >= 1


class SlowSink(RecordingSink):
    """Each page takes ``delay`` seconds to commit (far longer than a LIST page from an
    in-process kubesim takes); records how far the informer is ahead
    (LIST pages it fetched minus pages the sink was handed) whenever a page arrives."""

    def __init__(self, cluster: Cluster, *, delay: float) -> None:
        super().__init__()
        self.cluster = cluster
        self.delay = delay
        self.ahead: list[int] = []

    async def snapshot_page(self, rtype: ResourceType, snapshot_id: str, items: list[KubeObject]) -> None:
        self.ahead.append(self.cluster.requests("list") - self.count("snapshot_page"))
        await asyncio.sleep(self.delay)
        await super().snapshot_page(rtype, snapshot_id, items)


async def test_slow_sink_blocks_instead_of_dropping(cluster: Cluster, kube: KubeClient) -> None:
    pages = 15
    for i in range(pages * PAGED.page_size):
        await cluster.configmap(f"cm{i:02}")
    sink = SlowSink(cluster, delay=0.25)
    overflows = _overflows()
    async with running(pipeline(kube, sink)):
        await sink.wait_for(lambda: sink.count("snapshot_end") == 1)
    assert sink.count("snapshot_start") == 1 and len(sink.names("configmaps")) == pages * PAGED.page_size
    assert cluster.requests("list") == pages and _overflows() == overflows, "nothing was dropped"
    # The sink was the bottleneck: the informer got ahead of it until the 5-object buffer
    # (one page here) was full, and no further: it waited for the sink instead of listing on.
    assert 3 <= max(sink.ahead) <= 5, sink.ahead


async def test_snapshot_lost_and_unavailable_recover(cluster: Cluster, kube: KubeClient) -> None:
    for i in range(4):
        await cluster.configmap(f"cm{i}")
    sink = RecordingSink()
    sink.fail_next["snapshot_page"] = SinkNeedsSnapshot("gone")
    sink.fail_next["snapshot_end"] = SinkUnavailable("refused")
    async with running(pipeline(kube, sink)):
        await sink.wait_for(lambda: "configmaps" in sink.committed)
    assert sink.count("snapshot_start") == 2 and sink.count("snapshot_end") == 2
    assert sink.names("configmaps") == ["cm0", "cm1", "cm2", "cm3"]


async def test_rejected_batch_is_counted_and_resnapshotted(cluster: Cluster, kube: KubeClient) -> None:
    sink = RecordingSink()
    sync = pipeline(kube, sink)
    async with running(sync):
        await sink.wait_for(lambda: sink.count("snapshot_end") == 1)
        await cluster.configmap("poison")
        await sink.wait_for(lambda: sink.count("snapshot_end") == 2)
    assert sync.status.rejected >= 1
    assert sink.names("configmaps") == ["poison"]  # the fresh snapshot re-derived it


WIDGETS_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


async def test_runner_follows_discovery(cluster: Cluster, kube: KubeClient) -> None:
    await cluster.configmap("a")
    sink = RecordingSink()
    selection = Selection(include=("configmaps", "*.example.com"), discovery_refresh=0.2)
    runner = Runner(
        client=kube, sink=sink, selection=selection, informer_settings=PAGED, pipeline_settings=FAST
    )
    task = asyncio.create_task(runner.run())
    try:
        await sink.wait_for(lambda: "configmaps" in sink.committed)
        assert [t.key for t in runner.types] == ["configmaps"]
        await cluster.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGETS_CRD)
        await cluster.request(
            "POST",
            "/apis/example.com/v1/namespaces/default/widgets",
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
        )
        await sink.wait_for(lambda: sink.names("widgets.example.com") == ["w"])
        assert runner.statuses()["widgets.example.com"]["phase"] == "watching"
        await cluster.request(
            "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"
        )
        await sink.wait_for(lambda: sink.removed == ["widgets.example.com"])
        assert "widgets.example.com" not in runner.statuses()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert runner.statuses() == {}
