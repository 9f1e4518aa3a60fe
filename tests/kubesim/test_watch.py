"""WATCH: starting points, bookmarks, streaming lists, 410 in the stream, selectors.

https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson

from kubesim.server import SimServer, running
from tests.kubesim.conftest import call, fast_config, pod_body, wait_until, watch_lines

PODS = "/api/v1/pods"
DEFAULT_PODS = "/api/v1/namespaces/default/pods"
MERGE = "application/merge-patch+json"


async def _list_rv(sim: SimServer, http: aiohttp.ClientSession) -> str:
    _, body = await call(http, "GET", sim.url + PODS)
    return str(body["metadata"]["resourceVersion"])


async def test_watch_from_version_sends_only_later_changes(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    rv = await _list_rv(sim, http)
    await call(http, "POST", sim.url + DEFAULT_PODS, pod_body("w1"))
    await call(http, "PATCH", sim.url + DEFAULT_PODS + "/w1", {"metadata": {"labels": {"a": "b"}}},
               MERGE)
    await call(http, "DELETE", sim.url + DEFAULT_PODS + "/w1")
    events = await watch_lines(http, sim.url + PODS, count=3, resourceVersion=rv)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] == int(rv) + 1


async def test_watch_without_version_starts_with_synthetic_adds(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    for rv in ("", "0"):
        params = {"resourceVersion": rv} if rv else {}
        events = await watch_lines(http, sim.url + PODS, count=12, **params)
        assert {e["type"] for e in events} == {"ADDED"}
        assert len({e["object"]["metadata"]["name"] for e in events}) == 12


async def test_live_events_and_headers(sim: SimServer, http: aiohttp.ClientSession) -> None:
    rv = await _list_rv(sim, http)
    params = {"watch": "1", "resourceVersion": rv}
    async with http.get(sim.url + DEFAULT_PODS, params=params) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        assert resp.headers["Transfer-Encoding"] == "chunked"
        await call(http, "POST", sim.url + DEFAULT_PODS, pod_body("live"))
        line = await asyncio.wait_for(resp.content.readline(), 2)
    event = orjson.loads(line)
    assert event["type"] == "ADDED" and event["object"]["metadata"]["name"] == "live"


async def test_bookmarks_carry_only_the_version(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    rv = await _list_rv(sim, http)
    started = time.monotonic()
    events = await watch_lines(http, sim.url + PODS, count=2, resourceVersion=rv,
                               allowWatchBookmarks="true")
    assert time.monotonic() - started >= 0.35
    assert [e["type"] for e in events] == ["BOOKMARK", "BOOKMARK"]
    assert events[0]["object"] == {"kind": "Pod", "apiVersion": "v1",
                                   "metadata": {"resourceVersion": str(sim.sim.store.rv)}}


async def test_no_bookmarks_unless_asked(sim: SimServer, http: aiohttp.ClientSession) -> None:
    rv = await _list_rv(sim, http)
    events = await watch_lines(http, sim.url + PODS, resourceVersion=rv, timeoutSeconds="0.5")
    assert events == []


async def test_timeout_seconds_ends_the_stream(sim: SimServer, http: aiohttp.ClientSession) -> None:
    rv = await _list_rv(sim, http)
    started = time.monotonic()
    events = await watch_lines(http, sim.url + PODS, resourceVersion=rv, timeoutSeconds="1",
                               allowWatchBookmarks="true")
    assert time.monotonic() - started >= 0.9, "the stream ended before timeoutSeconds"
    assert {e["type"] for e in events} == {"BOOKMARK"}


async def test_send_initial_events_ends_with_annotated_bookmark(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    for rv in ("", "1"):
        events = await watch_lines(
            http, sim.url + PODS, until_type="BOOKMARK", sendInitialEvents="true",
            resourceVersionMatch="NotOlderThan", allowWatchBookmarks="true", resourceVersion=rv,
        )
        assert [e["type"] for e in events] == ["ADDED"] * 12 + ["BOOKMARK"]
        meta = events[-1]["object"]["metadata"]
        assert meta["annotations"] == {"k8s.io/initial-events-end": "true"}
        assert meta["resourceVersion"] == str(sim.sim.store.rv)


async def test_send_initial_events_requires_its_companions(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    bad = [
        {"sendInitialEvents": "true", "allowWatchBookmarks": "true"},
        {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan"},
        {"resourceVersionMatch": "NotOlderThan", "resourceVersion": "1"},
    ]
    for params in bad:
        status, body = await call(http, "GET", sim.url + PODS, watch="true", **params)
        assert (status, body["reason"]) == (422, "Invalid"), params


async def test_too_old_version_is_an_error_event(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    rv = await _list_rv(sim, http)
    await call(http, "POST", sim.url + DEFAULT_PODS, pod_body("x"))
    _, compacted = await call(http, "POST", sim.url + "/_kubesim/compact")
    events = await watch_lines(http, sim.url + PODS, resourceVersion=rv)
    floor = compacted["compactedResourceVersion"]
    assert events == [{"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"too old resource version: {rv} ({floor})", "reason": "Expired", "code": 410}}]


async def test_history_window_by_count(http: aiohttp.ClientSession) -> None:
    async with running(config=fast_config(history_max_events=4)) as server:
        rv = await _list_rv(server, http)
        for n in range(8):
            await call(http, "POST", server.url + DEFAULT_PODS, pod_body(f"p{n}"))
        events = await watch_lines(http, server.url + PODS, resourceVersion=rv)
        assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410
        recent = str(server.sim.store.rv - 2)
        events = await watch_lines(http, server.url + PODS, count=2, resourceVersion=recent)
        assert [e["object"]["metadata"]["name"] for e in events] == ["p6", "p7"]


async def test_selector_watch_turns_non_matching_into_deleted(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    rv = await _list_rv(sim, http)
    url = sim.url + DEFAULT_PODS
    await call(http, "POST", url, pod_body("s", {"team": "a"}))
    await call(http, "PATCH", url + "/s", {"metadata": {"labels": {"team": "b"}}}, MERGE)
    await call(http, "PATCH", url + "/s", {"metadata": {"labels": {"team": "a"}}}, MERGE)
    await call(http, "POST", url, pod_body("other", {"team": "b"}))
    events = await watch_lines(http, sim.url + PODS, count=3, resourceVersion=rv,
                               labelSelector="team=a")
    assert [e["type"] for e in events] == ["ADDED", "DELETED", "ADDED"]
    events = await watch_lines(http, sim.url + PODS, count=1, resourceVersion=rv,
                               fieldSelector="metadata.name=other")
    assert events[0]["object"]["metadata"]["name"] == "other"


async def test_table_watch(sim: SimServer, http: aiohttp.ClientSession) -> None:
    rv = await _list_rv(sim, http)
    await call(http, "POST", sim.url + DEFAULT_PODS, pod_body("tw"))
    accept = "application/json;as=Table;g=meta.k8s.io;v=v1,application/json"
    events = await watch_lines(http, sim.url + PODS, count=1, resourceVersion=rv,
                               headers={"Accept": accept})
    table = events[0]["object"]
    assert table["kind"] == "Table" and table["rows"][0]["cells"][0] == "tw"


async def test_drop_watches_ends_streams(sim: SimServer, http: aiohttp.ClientSession) -> None:
    rv = await _list_rv(sim, http)
    reader = asyncio.create_task(watch_lines(http, sim.url + PODS, resourceVersion=rv))
    await wait_until(lambda: bool(sim.handlers.watchers))
    _, body = await call(http, "POST", sim.url + "/_kubesim/drop-watches")
    assert body["dropped"] == 1
    assert await asyncio.wait_for(reader, 30) == []


async def test_slow_watcher_is_closed(http: aiohttp.ClientSession) -> None:
    async with running(config=fast_config(watch_queue_max=3)) as server:
        rv = await _list_rv(server, http)
        async with http.get(server.url + PODS,
                            params={"watch": "1", "resourceVersion": rv}) as resp:
            await wait_until(lambda: bool(server.handlers.watchers))
            watcher = next(iter(server.handlers.watchers))
            for n in range(5):  # synchronous writes: the queue overflows before any flush
                server.sim.api.create(
                    server.sim.registry.lookup("", "v1", "pods"),  # type: ignore[arg-type]
                    "default", pod_body(f"flood{n}"))
            assert watcher.overflowed
            body = await asyncio.wait_for(resp.read(), 2)
        assert body == b""


async def test_watch_delivery_rate(http: aiohttp.ClientSession) -> None:
    """Ten watchers each receive every event; delivery keeps up with in-process writes."""
    async with running() as server:
        rv = await _list_rv(server, http)
        readers = [asyncio.create_task(watch_lines(http, server.url + PODS, count=2000,
                                                   resourceVersion=rv, within=20))
                   for _ in range(10)]
        await wait_until(lambda: len(server.handlers.watchers) == 10)
        pods = server.sim.registry.lookup("", "v1", "pods")
        assert pods is not None
        for n in range(2000):
            server.sim.api.create(pods, "default", pod_body(f"r{n}"))
            if n % 200 == 0:
                await asyncio.sleep(0)
        results = await asyncio.gather(*readers)
        assert all(len(r) == 2000 for r in results)


async def test_legacy_watch_path(sim: SimServer, http: aiohttp.ClientSession) -> None:
    rv = await _list_rv(sim, http)
    await call(http, "POST", sim.url + DEFAULT_PODS, pod_body("legacy"))
    events = await watch_lines(http, sim.url + "/api/v1/watch/namespaces/default/pods", count=1,
                               resourceVersion=rv)
    assert events[0]["object"]["metadata"]["name"] == "legacy"


async def test_stall_holds_watch_delivery(sim: SimServer, http: aiohttp.ClientSession) -> None:
    rv = await _list_rv(sim, http)
    params = {"watch": "1", "resourceVersion": rv}
    async with http.get(sim.url + DEFAULT_PODS, params=params) as resp:
        await wait_until(lambda: bool(sim.handlers.watchers))
        await call(http, "POST", sim.url + "/_kubesim/stall", seconds=0.5)
        sim.sim.api.create(sim.sim.registry.lookup("", "v1", "pods"),  # type: ignore[arg-type]
                           "default", pod_body("held"))
        started = time.monotonic()
        line = await asyncio.wait_for(resp.content.readline(), 3)
        assert time.monotonic() - started >= 0.4
    assert orjson.loads(line)["object"]["metadata"]["name"] == "held"


async def test_watch_from_a_future_version_skips_up_to_it(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    future = sim.sim.store.rv + 2
    reader = asyncio.create_task(watch_lines(http, sim.url + DEFAULT_PODS, count=1,
                                             resourceVersion=str(future)))
    await wait_until(lambda: bool(sim.handlers.watchers))
    for name in ("f1", "f2", "f3"):
        await call(http, "POST", sim.url + DEFAULT_PODS, pod_body(name))
    events = await asyncio.wait_for(reader, 30)
    assert events[0]["object"]["metadata"]["name"] == "f3"


async def test_metadata_only_watch(sim: SimServer, http: aiohttp.ClientSession) -> None:
    rv = await _list_rv(sim, http)
    await call(http, "POST", sim.url + DEFAULT_PODS, pod_body("meta-only"))
    accept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
    events = await watch_lines(http, sim.url + PODS, count=1, resourceVersion=rv,
                               headers={"Accept": accept})
    obj = events[0]["object"]
    assert obj["kind"] == "PartialObjectMetadata" and "spec" not in obj
    assert obj["metadata"]["name"] == "meta-only"


async def test_history_window_by_age(http: aiohttp.ClientSession) -> None:
    async with running(config=fast_config(history_seconds=0.3)) as server:
        rv = await _list_rv(server, http)
        await call(http, "POST", server.url + DEFAULT_PODS, pod_body("old"))
        events = await watch_lines(http, server.url + PODS, count=1, resourceVersion=rv)
        assert events[0]["type"] == "ADDED"
        await asyncio.sleep(0.35)
        events = await watch_lines(http, server.url + PODS, resourceVersion=rv)
        assert events[0]["type"] == "ERROR" and events[0]["object"]["reason"] == "Expired"
        _, page = await call(http, "GET", server.url + PODS, resourceVersion=rv,
                             resourceVersionMatch="Exact")
        assert page["code"] == 410


async def test_streaming_list_from_a_future_version_times_out_in_the_stream(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    future = str(sim.sim.store.rv + 50)
    events = await watch_lines(http, sim.url + PODS, sendInitialEvents="true",
                               resourceVersionMatch="NotOlderThan", allowWatchBookmarks="true",
                               resourceVersion=future)
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["code"], status["reason"]) == (504, "Timeout")
    assert status["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


async def test_watchers_of_one_burst_each_get_their_own_events_in_order(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    """Writes made in one turn of the event loop reach each watcher as one batch: plain
    watchers share its joined lines, filtered, namespaced and Table watchers do not."""
    rv = await _list_rv(sim, http)
    table = "application/json;as=Table;g=meta.k8s.io;v=v1,application/json"

    def start(count: int, path: str = PODS, **params: Any) -> asyncio.Task[list[dict[str, Any]]]:
        return asyncio.create_task(watch_lines(http, sim.url + path, count=count,
                                               resourceVersion=rv, **params))

    tasks = {"plain": start(5), "plain-too": start(5), "team-a": start(3, labelSelector="team=a"),
             "table": start(5, headers={"Accept": table})}
    in_default = start(4, DEFAULT_PODS)
    pods = sim.sim.registry.by_key("pods")
    assert pods is not None
    tstore = sim.sim.api.tstore(pods)
    await wait_until(lambda: len(tstore.sinks) == 5)
    api = sim.sim.api
    api.create(pods, "default", pod_body("a1", {"team": "a"}))  # no await: one batch
    api.create(pods, "ns-000", {**pod_body("a2", {"team": "a"}), "metadata": {
        "name": "a2", "namespace": "ns-000", "labels": {"team": "a"}}})
    api.create(pods, "default", pod_body("b1", {"team": "b"}))
    api.patch(pods, "default", "a1", MERGE, {"metadata": {"labels": {"team": "b"}}})
    api.delete(pods, "default", "b1")
    seen = {name: await task for name, task in tasks.items()}
    every = [("ADDED", "a1"), ("ADDED", "a2"), ("ADDED", "b1"), ("MODIFIED", "a1"),
             ("DELETED", "b1")]
    for name in ("plain", "plain-too"):
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in seen[name]] == every
        versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in seen[name]]
        assert versions == list(range(int(rv) + 1, int(rv) + 6))
    # a1 left the selection: the filtered watcher sees it deleted.
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in seen["team-a"]] == [
        ("ADDED", "a1"), ("ADDED", "a2"), ("DELETED", "a1")]
    assert [e["object"]["kind"] for e in seen["table"]] == ["Table"] * 5
    assert [e["object"]["rows"][0]["cells"][0] for e in seen["table"]] == [n for _, n in every]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in await in_default] == [
        ("ADDED", "a1"), ("ADDED", "b1"), ("MODIFIED", "a1"), ("DELETED", "b1")]
