"""Pull mode in one process: the syncer runs the informers from a stored kubeconfig."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import yaml

import kubesim
from kubesim.kubeconfig import kubeconfig
from tests.convergence import wait_converged
from tests.syncer.conftest import Ingest


async def _register_pull(ingest: Ingest, name: str, server_url: str) -> None:
    status, body = await ingest.admin("POST", "/admin/v1/clusters", {
        "name": name, "mode": "pull", "kubeconfig": yaml.safe_dump(kubeconfig(server_url)),
        "settings": {"selection": {"discoveryRefreshSeconds": 1}}})
    assert status == 201, body


async def _wait_health(ingest: Ingest, *, healthy: bool) -> dict[str, Any]:
    for _ in range(60):
        _, overview = await ingest.admin("GET", "/admin/v1/clusters")
        [entry] = overview["clusters"]
        if entry["healthy"] is healthy:
            return entry
        await asyncio.sleep(0.25)
    raise AssertionError(f"health never became {healthy}: {entry}")


async def test_pull_cluster_syncs_and_is_removed(ingest: Ingest, pool: asyncpg.Pool) -> None:
    async with kubesim.running(generate={"namespaces": 3, "pods": 40, "deployments": 4}, seed=3) as sim:
        await _register_pull(ingest, "pulled", sim.url)
        await wait_converged(pool, "pulled", sim.url, within=30)
        async with aiohttp.ClientSession() as session:
            body = {"metadata": {"name": "fresh"}, "data": {"k": "v"}}
            async with session.post(sim.url + "/api/v1/namespaces/default/configmaps", json=body) as resp:
                assert resp.status == 201
        await wait_converged(pool, "pulled", sim.url, within=15)
        entry = await _wait_health(ingest, healthy=True)
        assert entry["mode"] == "pull" and entry["stale"] is False
        status, removed = await ingest.admin("DELETE", "/admin/v1/clusters/pulled")
        assert status == 200 and removed["deleted"] > 40
        await asyncio.sleep(2.5)  # a poll of the pull manager: it lets the cluster go
        assert await pool.fetchval("SELECT count(*) FROM resources") == 0
        assert await pool.fetchval("SELECT count(*) FROM sync_state") == 0


async def test_unreachable_pull_cluster_is_stale(ingest: Ingest) -> None:
    await _register_pull(ingest, "gone", "http://127.0.0.1:9")
    entry = await _wait_health(ingest, healthy=False)
    assert entry["stale"] is True
    assert "unreachable" in entry["healthMessage"]


async def test_unusable_kubeconfig_is_reported(ingest: Ingest) -> None:
    status, body = await ingest.admin("POST", "/admin/v1/clusters", {
        "name": "broken", "mode": "pull", "kubeconfig": "clusters: [oops"})
    assert (status, body["reason"]) == (422, "Invalid") and "not YAML" in body["message"]
    status, body = await ingest.admin("POST", "/admin/v1/clusters", {
        "name": "broken", "mode": "pull", "kubeconfig": "apiVersion: v1\nkind: Config\n"})
    assert status == 201, body
    entry = await _wait_health(ingest, healthy=False)
    assert entry["healthMessage"].startswith("configuration unusable: cannot load kubeconfig")
