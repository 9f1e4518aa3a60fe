"""Control endpoints: faults, restart, stats and dump."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from kubesim.server import SimServer
from tests.kubesim.conftest import call, pod_body, wait_until, watch_lines

PODS = "/api/v1/pods"


async def test_fail_next_requests(sim: SimServer, http: aiohttp.ClientSession) -> None:
    await call(http, "POST", sim.url + "/_kubesim/fail", count=2, code=429, retryAfter=3)
    for _ in range(2):
        async with http.get(sim.url + PODS) as resp:
            body = await resp.json()
            assert resp.status == 429 and resp.headers["Retry-After"] == "3"
            assert body["reason"] == "TooManyRequests"
            assert body["details"]["retryAfterSeconds"] == 3
    assert (await call(http, "GET", sim.url + PODS))[0] == 200
    await call(http, "POST", sim.url + "/_kubesim/fail", count=1, code=500)
    status, body = await call(http, "GET", sim.url + PODS)
    assert (status, body["reason"]) == (500, "InternalError")


async def test_stall_holds_requests(sim: SimServer, http: aiohttp.ClientSession) -> None:
    await call(http, "POST", sim.url + "/_kubesim/stall", seconds=0.4)
    started = time.monotonic()
    status, _ = await call(http, "GET", sim.url + PODS)
    assert status == 200 and time.monotonic() - started >= 0.35


async def test_restart_keeps_state_and_port(sim: SimServer, http: aiohttp.ClientSession) -> None:
    await call(http, "POST", sim.url + "/api/v1/namespaces/default/pods", pod_body("kept"))
    port = sim.port
    reader = asyncio.create_task(
        call(http, "GET", sim.url + PODS, watch="true", resourceVersion=str(sim.sim.store.rv)))
    await wait_until(lambda: bool(sim.handlers.watchers))
    await call(http, "POST", sim.url + "/_kubesim/restart", downSeconds=3)
    await asyncio.wait_for(asyncio.gather(reader, return_exceptions=True), 30)  # watches end
    async with asyncio.timeout(30):  # it stops listening for 3 s, then listens again
        while await _answers(sim.url):  # noqa: ASYNC110 (a port's state: nothing to await)
            await asyncio.sleep(0.05)
        while not await _answers(sim.url):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    async with aiohttp.ClientSession() as fresh:
        status, _ = await call(fresh, "GET", sim.url + "/api/v1/namespaces/default/pods/kept")
    assert status == 200 and sim.port == port


async def _answers(url: str) -> bool:
    """Does the server accept a connection (each try on a fresh one)?"""
    async with aiohttp.ClientSession() as fresh:
        try:
            async with fresh.get(url + "/version"):
                return True
        except aiohttp.ClientConnectionError:
            return False


async def test_stats_count_lists_per_resource(sim: SimServer, http: aiohttp.ClientSession) -> None:
    await call(http, "POST", sim.url + "/_kubesim/stats/reset")
    await call(http, "GET", sim.url + PODS)
    await call(http, "GET", sim.url + "/apis/apps/v1/deployments")
    await call(http, "GET", sim.url + "/apis/apps/v1/deployments", limit=1)
    await call(http, "GET", sim.url + "/api/v1/namespaces/ns-000/pods/nope")
    rv = str(sim.sim.store.rv)
    await watch_lines(http, sim.url + PODS, resourceVersion=rv, timeoutSeconds="0.1")
    await watch_lines(http, sim.url + PODS, timeoutSeconds="0.1")
    _, stats = await call(http, "GET", sim.url + "/_kubesim/stats")
    assert stats["resources"]["list"] == {"pods": 1, "deployments.apps": 2}
    assert stats["resources"]["get"] == {"pods": 1}
    assert stats["resources"]["watch"] == {"pods": 2}
    assert stats["resources"]["watch-list"] == {"pods": 1}


async def test_dump_lists_every_object(sim: SimServer, http: aiohttp.ClientSession) -> None:
    _, dump = await call(http, "GET", sim.url + "/_kubesim/dump")
    pods = [o for o in dump["objects"] if o["resource"] == "pods"]
    assert len(pods) == 12
    assert set(pods[0]) == {"group", "version", "resource", "kind", "namespace", "name", "uid",
                            "resourceVersion"}
    assert dump["resourceVersion"] == str(sim.sim.store.rv)


async def test_discovery_of_one_group_version_fails_until_healed(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    status, body = await call(http, "POST", sim.url + "/_kubesim/fail-discovery", groupVersion="apps/v1")
    assert (status, body) == (200, {"failingDiscovery": "apps/v1", "code": 503})
    for _ in range(2):
        status, body = await call(http, "GET", sim.url + "/apis/apps/v1")
        assert (status, body["reason"]) == (503, "ServiceUnavailable")
    _, groups = await call(http, "GET", sim.url + "/apis")
    assert "apps" in [g["name"] for g in groups["groups"]], "the group is still listed"
    assert (await call(http, "GET", sim.url + "/apis/apps/v1/deployments"))[0] == 200
    assert (await call(http, "GET", sim.url + "/apis/apps"))[0] == 200
    assert (await call(http, "GET", sim.url + "/api/v1"))[0] == 200
    _, stats = await call(http, "GET", sim.url + "/_kubesim/stats")
    assert stats["discoveryFailures"] == {"apps/v1": 2}
    status, body = await call(http, "POST", sim.url + "/_kubesim/heal-discovery", groupVersion="apps/v1")
    assert (status, body) == (200, {"healed": ["apps/v1"]})
    assert (await call(http, "GET", sim.url + "/apis/apps/v1"))[0] == 200


async def test_core_discovery_fault_and_bad_requests(sim: SimServer, http: aiohttp.ClientSession) -> None:
    await call(http, "POST", sim.url + "/_kubesim/fail-discovery", groupVersion="v1", code=500)
    assert (await call(http, "GET", sim.url + "/api/v1"))[0] == 500
    assert (await call(http, "GET", sim.url + PODS))[0] == 200
    assert (await call(http, "POST", sim.url + "/_kubesim/heal-discovery"))[1] == {"healed": ["v1"]}
    assert (await call(http, "GET", sim.url + "/api/v1"))[0] == 200
    assert (await call(http, "POST", sim.url + "/_kubesim/fail-discovery"))[0] == 400
    assert (await call(http, "POST", sim.url + "/_kubesim/fail-discovery", groupVersion="v1",
                       code=200))[0] == 400


async def test_open_watches_counts_only_connected_clients(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    rv = str(sim.sim.store.rv)
    async with aiohttp.ClientSession() as client:
        response = await client.get(sim.url + PODS, params={"watch": "true", "resourceVersion": rv})
        assert response.status == 200
        await wait_until(lambda: bool(sim.handlers.watchers))
        _, stats = await call(http, "GET", sim.url + "/_kubesim/stats")
        assert stats["openWatches"] == 1
        response.close()  # the client goes away without the server ending the watch
    await wait_until(lambda: not sim.handlers.watchers)
    _, stats = await call(http, "GET", sim.url + "/_kubesim/stats")
    assert stats["openWatches"] == 0
