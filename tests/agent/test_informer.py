"""The informer against a real kubesim server."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from agent.events import (
    Bookmark,
    InformerMessage,
    SnapshotEnd,
    SnapshotPage,
    SnapshotStart,
    WatchEvent,
)
from agent.informer import Informer, InformerSettings
from agent.kubeclient import KubeClient
from kube.prune import LAST_APPLIED
from tests.agent.conftest import CONFIGMAPS, SECRETS, Cluster, take, take_until

PAGED = InformerSettings(page_size=3, streaming_lists=False)


def names(messages: list[InformerMessage]) -> list[str]:
    out: list[str] = []
    for message in messages:
        if isinstance(message, SnapshotPage):
            out.extend(item["metadata"]["name"] for item in message.items)
        elif isinstance(message, WatchEvent):
            out.append(f"{message.type}:{message.object['metadata']['name']}")
    return out


def is_change(message: InformerMessage) -> bool:
    return isinstance(message, WatchEvent)


async def snapshot(stream: AsyncGenerator[InformerMessage, None]) -> list[InformerMessage]:
    return await take_until(stream, lambda m: isinstance(m, SnapshotEnd))


async def test_paged_list_snapshot(cluster: Cluster, kube: KubeClient) -> None:
    for i in range(7):
        await cluster.configmap(f"cm{i}")
    stream = Informer(client=kube, rtype=CONFIGMAPS, settings=PAGED).stream()
    messages = await snapshot(stream)
    await stream.aclose()
    assert isinstance(messages[0], SnapshotStart)
    assert [len(m.items) for m in messages if isinstance(m, SnapshotPage)] == [3, 3, 1]
    assert sorted(names(messages)) == [f"cm{i}" for i in range(7)]
    assert cluster.requests("list") == 3
    page = messages[1]
    assert isinstance(page, SnapshotPage)
    assert page.items[0]["kind"] == "ConfigMap" and page.items[0]["apiVersion"] == "v1"


async def test_watch_from_list_rv_and_bookmarks(cluster: Cluster, kube: KubeClient) -> None:
    await cluster.configmap("before")
    stream = Informer(client=kube, rtype=CONFIGMAPS, settings=PAGED).stream()
    end = (await snapshot(stream))[-1]
    assert isinstance(end, SnapshotEnd)
    await cluster.configmap("new")
    await cluster.update_configmap("new", a="b")
    await cluster.delete_configmap("before")
    changes = [m for m in await take(stream, 10) if isinstance(m, WatchEvent)][:3]
    assert names(changes) == ["ADDED:new", "MODIFIED:new", "DELETED:before"]
    assert int(changes[0].resource_version) > int(end.resource_version)
    # Bookmarks (every 0.3 s here) carry the stream's position forward.
    bookmark = (await take_until(stream, lambda m: isinstance(m, Bookmark)))[-1]
    assert isinstance(bookmark, Bookmark)
    assert int(bookmark.resource_version) >= int(changes[-1].resource_version)
    await stream.aclose()
    assert cluster.requests("list") == 1


async def test_gone_starts_fresh_snapshot(cluster: Cluster, kube: KubeClient) -> None:
    await cluster.configmap("a")
    stream = Informer(client=kube, rtype=CONFIGMAPS, settings=PAGED).stream()
    first_end = (await snapshot(stream))[-1]
    assert isinstance(first_end, SnapshotEnd)
    # While the informer is not reading, history moves on and is compacted away.
    await cluster.configmap("b")
    await cluster.delete_configmap("a")
    await cluster.control("compact")
    await cluster.control("drop-watches")
    messages = await take_until(stream, lambda m: isinstance(m, SnapshotEnd), within=30)
    await stream.aclose()
    assert [m.reason for m in messages if isinstance(m, SnapshotStart)] == ["expired"]
    assert names([m for m in messages if isinstance(m, SnapshotPage)]) == ["b"]
    assert cluster.requests("list") == 2
    assert int(messages[-1].resource_version) > int(first_end.resource_version)  # type: ignore[union-attr]


async def test_dropped_watch_rewatches_without_list(cluster: Cluster, kube: KubeClient) -> None:
    stream = Informer(client=kube, rtype=CONFIGMAPS, settings=PAGED).stream()
    await snapshot(stream)
    for i in range(3):
        await cluster.control("drop-watches")
        await cluster.configmap(f"x{i}")
        assert names(await take_until(stream, is_change)) == [f"ADDED:x{i}"]
    await stream.aclose()
    assert cluster.requests("list") == 1
    assert cluster.requests("watch") >= 3


async def test_server_timeout_rewatches(cluster: Cluster, kube: KubeClient) -> None:
    settings = InformerSettings(page_size=3, streaming_lists=False, watch_timeout=1)
    stream = Informer(client=kube, rtype=CONFIGMAPS, settings=settings).stream()
    await snapshot(stream)
    await take_until(stream, lambda m: cluster.requests("watch") >= 2, within=30)
    await cluster.configmap("late")
    assert names(await take_until(stream, is_change)) == ["ADDED:late"]
    await stream.aclose()
    assert cluster.requests("list") == 1


async def test_checkpoint_resumes_without_list(cluster: Cluster, kube: KubeClient) -> None:
    await cluster.configmap("a")
    stream = Informer(client=kube, rtype=CONFIGMAPS, settings=PAGED).stream()
    end = (await snapshot(stream))[-1]
    await stream.aclose()
    assert isinstance(end, SnapshotEnd)
    await cluster.configmap("while-away")
    cluster.server.sim.stats.reset()
    stream = Informer(client=kube, rtype=CONFIGMAPS).stream(checkpoint=end.resource_version)
    first = await take_until(stream, is_change)
    await stream.aclose()
    assert names(first) == ["ADDED:while-away"]
    assert not any(isinstance(m, SnapshotStart) for m in first)
    assert cluster.requests("list") == 0


async def test_streaming_list(cluster: Cluster, kube: KubeClient) -> None:
    for i in range(7):
        await cluster.configmap(f"cm{i}")
    settings = InformerSettings(page_size=3)
    stream = Informer(client=kube, rtype=CONFIGMAPS, settings=settings).stream()
    messages = await snapshot(stream)
    assert isinstance(messages[0], SnapshotStart)
    assert [len(m.items) for m in messages if isinstance(m, SnapshotPage)] == [3, 3, 1]
    assert kube.streaming_lists is True
    assert cluster.requests("list") == 0
    await cluster.configmap("after")  # the same connection continues as a watch
    assert names(await take_until(stream, is_change)) == ["ADDED:after"]
    await stream.aclose()
    assert cluster.requests("watch") == 1


async def test_streaming_list_refused_falls_back(cluster: Cluster, kube: KubeClient) -> None:
    await cluster.configmap("a")
    await cluster.control("fail", count="1", code="400")
    stream = Informer(client=kube, rtype=CONFIGMAPS).stream()
    messages = await snapshot(stream)
    await stream.aclose()
    assert names(messages) == ["a"]
    assert kube.streaming_lists is False
    assert cluster.requests("list") == 1


async def test_namespace_include_and_exclude(cluster: Cluster, kube: KubeClient) -> None:
    for ns in ("a", "b", "c"):
        await cluster.namespace(ns)
        await cluster.configmap(f"in-{ns}", ns=ns)
    settings = InformerSettings(page_size=3, namespaces_include=("a", "b"))
    stream = Informer(client=kube, rtype=CONFIGMAPS, settings=settings).stream()
    messages = await snapshot(stream)
    assert sorted(names(messages)) == ["in-a", "in-b"]
    checkpoint = messages[-1].resource_version  # type: ignore[union-attr]
    assert checkpoint.startswith('{"namespaces":')
    await cluster.configmap("late-c", ns="c")
    await cluster.configmap("late-b", ns="b")
    after = await take_until(stream, is_change)
    await stream.aclose()
    assert names(after) == ["ADDED:late-b"]
    # Composite positions resume without a list.
    cluster.server.sim.stats.reset()
    stream = Informer(client=kube, rtype=CONFIGMAPS, settings=settings).stream(checkpoint=checkpoint)
    resumed = await take_until(stream, is_change)
    await stream.aclose()
    assert names(resumed) == ["ADDED:late-b"] and cluster.requests("list") == 0

    excluding = InformerSettings(page_size=3, namespace_excluded=lambda ns: ns == "c")
    stream = Informer(client=kube, rtype=CONFIGMAPS, settings=excluding).stream()
    assert sorted(names(await snapshot(stream))) == ["in-a", "in-b", "late-b"]
    await cluster.configmap("later-c", ns="c")
    await cluster.configmap("later-a", ns="a")
    assert names(await take_until(stream, is_change)) == ["ADDED:later-a"]
    await stream.aclose()


async def test_huge_object_through_watch(cluster: Cluster, kube: KubeClient) -> None:
    stream = Informer(client=kube, rtype=CONFIGMAPS, settings=PAGED).stream()
    await snapshot(stream)
    big = "x" * (1536 * 1024)
    await cluster.configmap("huge", blob=big)
    change = (await take_until(stream, is_change))[-1]
    await stream.aclose()
    assert isinstance(change, WatchEvent) and change.object["data"]["blob"] == big


async def test_prune_applied(cluster: Cluster, kube: KubeClient) -> None:
    await cluster.request(
        "POST",
        "/api/v1/namespaces/default/secrets",
        {
            "metadata": {"name": "s", "annotations": {LAST_APPLIED: "{}", "keep": "me"}},
            "data": {"password": "aHVudGVyMg=="},
        },
    )
    stream = Informer(client=kube, rtype=SECRETS, settings=PAGED).stream()
    page = next(m for m in await snapshot(stream) if isinstance(m, SnapshotPage))
    await stream.aclose()
    secret = page.items[0]
    assert "data" not in secret and "managedFields" not in secret["metadata"]
    assert secret["metadata"]["annotations"] == {"keep": "me"}
    keeping = InformerSettings(streaming_lists=False, keep_secret_data=True)
    stream = Informer(client=kube, rtype=SECRETS, settings=keeping).stream()
    page = next(m for m in await snapshot(stream) if isinstance(m, SnapshotPage))
    await stream.aclose()
    assert page.items[0]["data"] == {"password": "aHVudGVyMg=="}


async def test_inactivity_reconnects(cluster: Cluster, kube: KubeClient) -> None:
    await cluster.control("stall", seconds="1.5")
    settings = InformerSettings(streaming_lists=False, inactivity_timeout=0.5)
    cluster.server.sim.config.bookmark_interval = 60.0
    stream = Informer(client=kube, rtype=CONFIGMAPS, settings=settings).stream(checkpoint="1")
    await cluster.configmap("after-silence")
    assert names(await take_until(stream, is_change, within=30)) == ["ADDED:after-silence"]
    await stream.aclose()
