"""Pull mode in one process: the syncer runs the informers from a stored kubeconfig."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import yaml

import kubesim
from kubesim.kubeconfig import kubeconfig
from syncer.ingest import advisory_holder
from syncer.pull import _health, ownership_key
from tests.convergence import wait_converged
from tests.syncer.conftest import Ingest

DEADLINE_S = 60.0  # for conditions that come within a poll or two; a failure waits this long


async def _register_pull(ingest: Ingest, name: str, server_url: str) -> None:
    status, body = await ingest.admin("POST", "/admin/v1/clusters", {
        "name": name, "mode": "pull", "kubeconfig": yaml.safe_dump(kubeconfig(server_url)),
        "settings": {"selection": {"discoveryRefreshSeconds": 1}}})
    assert status == 201, body


async def _wait_health(ingest: Ingest, *, healthy: bool) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while True:
        _, overview = await ingest.admin("GET", "/admin/v1/clusters")
        [entry] = overview["clusters"]
        if entry["healthy"] is healthy:
            return entry
        assert asyncio.get_running_loop().time() < deadline, f"health never became {healthy}: {entry}"
        await asyncio.sleep(0.25)


async def test_pull_cluster_syncs_and_is_removed(ingest: Ingest, pool: asyncpg.Pool) -> None:
    async with kubesim.running(generate={"namespaces": 3, "pods": 40, "deployments": 4}, seed=3) as sim:
        await _register_pull(ingest, "pulled", sim.url)
        await wait_converged(pool, "pulled", sim.url, within=DEADLINE_S)
        async with aiohttp.ClientSession() as session:
            body = {"metadata": {"name": "fresh"}, "data": {"k": "v"}}
            async with session.post(sim.url + "/api/v1/namespaces/default/configmaps", json=body) as resp:
                assert resp.status == 201
        await wait_converged(pool, "pulled", sim.url, within=DEADLINE_S)
        entry = await _wait_health(ingest, healthy=True)
        assert entry["mode"] == "pull" and entry["stale"] is False
        assert sim.handlers.watchers, "the syncer watches the cluster"
        status, removed = await ingest.admin("DELETE", "/admin/v1/clusters/pulled")
        assert status == 200 and removed["deleted"] > 40

        # The pull manager lets the cluster go: its ownership lock is released and every
        # watch on the cluster is closed; nothing of it is written again.
        async with asyncio.timeout(DEADLINE_S):
            while (await advisory_holder(pool, ownership_key("pulled")) is not None  # noqa: ASYNC110
                   or sim.handlers.watchers):
                await asyncio.sleep(0.1)
        assert await pool.fetchval("SELECT count(*) FROM resources") == 0
        assert await pool.fetchval("SELECT count(*) FROM sync_state") == 0


async def test_unreachable_pull_cluster_is_stale(ingest: Ingest) -> None:
    await _register_pull(ingest, "gone", "http://127.0.0.1:9")
    entry = await _wait_health(ingest, healthy=False)
    assert entry["stale"] is True
    assert "unreachable" in entry["healthMessage"]
    reason = ("cluster unreachable: discovery has not succeeded yet "
              "(GET /api: connection refused by 127.0.0.1:9)")
    for _ in range(40):  # the first round's failure is reported at the next health poll
        if entry["healthMessage"] == reason:
            break
        await asyncio.sleep(0.25)
        entry = await _wait_health(ingest, healthy=False)
    assert entry["healthMessage"] == reason


async def test_unusable_kubeconfig_is_reported(ingest: Ingest) -> None:
    status, body = await ingest.admin("POST", "/admin/v1/clusters", {
        "name": "broken", "mode": "pull", "kubeconfig": "clusters: [oops"})
    assert (status, body["reason"]) == (422, "Invalid") and "not YAML" in body["message"]
    status, body = await ingest.admin("POST", "/admin/v1/clusters", {
        "name": "broken", "mode": "pull", "kubeconfig": "apiVersion: v1\nkind: Config\n"})
    assert status == 201, body
    entry = await _wait_health(ingest, healthy=False)
    assert entry["healthMessage"].startswith("configuration unusable: cannot load kubeconfig")


class _FakeRunner:
    def __init__(self, statuses: dict[str, dict[str, Any]], *, discovered: bool = True) -> None:
        self._statuses = statuses
        self.discovered = asyncio.Event()
        if discovered:
            self.discovered.set()
        self.discovery_error: str | None = None

    def statuses(self) -> dict[str, dict[str, Any]]:
        return self._statuses


def test_health_message_is_one_line() -> None:
    failing = {"v1/configmaps": {"phase": "backoff",
                                 "last_error": "ApiConnectionError: GET /api/v1/configmaps:\n  timed out"},
               "v1/pods": {"phase": "error", "last_error": None}}
    assert _health(_FakeRunner(failing)) == (  # type: ignore[arg-type]
        False, "cluster unreachable: ApiConnectionError: GET /api/v1/configmaps: timed out")
    never = _FakeRunner({}, discovered=False)
    never.discovery_error = "GET /api: cannot resolve host\napi.example.invalid"
    assert _health(never) == (  # type: ignore[arg-type]
        False, "cluster unreachable: discovery has not succeeded yet (GET /api: cannot resolve host "
               "api.example.invalid)")
    assert _health(_FakeRunner({"v1/pods": {"phase": "watching"}})) == (True, None)  # type: ignore[arg-type]


async def test_discovery_failing_for_one_group_keeps_its_rows(ingest: Ingest, pool: asyncpg.Pool) -> None:
    """An API group whose discovery answers 503 (an aggregated API whose backend is down)
    is "not answering", not "no longer served": its types keep syncing and keep their rows."""
    async with kubesim.running(generate={"namespaces": 2, "pods": 10, "deployments": 3}, seed=4) as sim, \
            aiohttp.ClientSession() as http:

        async def control(action: str, method: str = "POST", **params: str) -> dict[str, Any]:
            async with http.request(method, f"{sim.url}/_kubesim/{action}", params=params) as resp:
                body: dict[str, Any] = await resp.json()
                assert resp.status == 200, body
                return body

        async def apps_rows() -> int:
            return int(await pool.fetchval("SELECT count(*) FROM resources WHERE grp = 'apps'"))

        async def scale(replicas: int) -> None:  # a change to a type of the failing group
            [deployment] = [o for o in sim.sim.dump() if o["resource"] == "deployments"][:1]
            path = f"/apis/apps/v1/namespaces/{deployment['namespace']}/deployments/{deployment['name']}"
            async with http.patch(sim.url + path, json={"spec": {"replicas": replicas}},
                                  headers={"Content-Type": "application/merge-patch+json"}) as resp:
                assert resp.status == 200, await resp.text()

        await _register_pull(ingest, "pulled", sim.url)
        await wait_converged(pool, "pulled", sim.url, within=DEADLINE_S)
        served = sum(1 for o in sim.sim.dump() if o["group"] == "apps")
        assert served > 0 and await apps_rows() == served

        await control("fail-discovery", groupVersion="apps/v1")
        async with asyncio.timeout(DEADLINE_S):  # discovery rounds (one a second) that met the 503
            while (await control("stats", "GET"))["discoveryFailures"].get("apps/v1", 0) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        assert await apps_rows() == served, "the group's rows were taken for no longer served"
        await scale(7)  # its watches kept running
        await wait_converged(pool, "pulled", sim.url, within=DEADLINE_S)

        await control("heal-discovery", groupVersion="apps/v1")
        await scale(2)
        await wait_converged(pool, "pulled", sim.url, within=DEADLINE_S)
        assert await apps_rows() == served
