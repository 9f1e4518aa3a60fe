"""Restarts resume from checkpoints: no relist."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from tests.convergence import wait_converged
from tests.e2e.procs import (
    agent_proc,
    cleanup,
    list_requests,
    register,
    start_server,
    start_sim,
)


async def wait_checkpointed(pool: asyncpg.Pool, cluster: str, *, within: float = 30.0) -> None:
    """Every synced type has committed a checkpoint (its first snapshot is complete)."""
    for _ in range(int(within / 0.2)):
        row = await pool.fetchrow(
            "SELECT count(*) AS n, count(checkpoint) AS done FROM sync_state WHERE cluster = $1", cluster)
        if row["n"] > 10 and row["n"] == row["done"]:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{cluster}: types without a checkpoint after {within}s")


async def test_agent_restart_resumes_without_listing(tmp_path: Path, db_url: str, pool: asyncpg.Pool) -> None:
    sim = await start_sim(tmp_path, "edge", generate="namespaces=3,pods=60,deployments=5", seed=1)
    async with cleanup(sim.proc) as procs:
        server = await start_server(tmp_path, "syncer", database_url=db_url)
        procs.append(server.proc)
        token = await register(server, "edge")
        assert token is not None
        agent = agent_proc(tmp_path, cluster="edge", server=server, token=token, kubeconfig=sim.kubeconfig)
        procs.append(agent)
        await agent.start()
        await wait_converged(pool, "edge", sim.url)
        await wait_checkpointed(pool, "edge")
        assert await agent.stop() == 0
        await sim.request("POST", "/api/v1/namespaces/default/configmaps",
                          {"metadata": {"name": "while-away"}, "data": {"k": "v"}})
        victim = (await sim.request("GET", "/api/v1/pods?limit=1"))["items"][0]["metadata"]
        await sim.request("DELETE", f"/api/v1/namespaces/{victim['namespace']}/pods/{victim['name']}")
        await sim.control("stats/reset")
        await agent.start()
        await wait_converged(pool, "edge", sim.url)
        stats = await sim.stats()
        assert list_requests(stats) == 0, stats
        gone = await pool.fetchval("SELECT count(*) FROM resources WHERE uid = $1", victim["uid"])
        assert gone == 0, "the deletion made while the agent was away reached the store"
        assert stats["requests"].get("watch", 0) > 0, stats


async def test_syncer_restart_resumes_pull_and_push_without_listing(
        tmp_path: Path, db_url: str, pool: asyncpg.Pool) -> None:
    pulled = await start_sim(tmp_path, "pulled", generate="namespaces=2,pods=40,deployments=4", seed=3)
    edge = await start_sim(tmp_path, "edge", generate="namespaces=2,pods=40,deployments=4", seed=4)
    async with cleanup(pulled.proc, edge.proc) as procs:
        server = await start_server(tmp_path, "syncer", database_url=db_url)
        procs.append(server.proc)
        await register(server, "pulled", kubeconfig=pulled.kubeconfig)
        token = await register(server, "edge")
        assert token is not None
        agent = agent_proc(tmp_path, cluster="edge", server=server, token=token, kubeconfig=edge.kubeconfig)
        procs.append(agent)
        await agent.start()
        for name, sim in (("pulled", pulled), ("edge", edge)):
            await wait_converged(pool, name, sim.url)
            await wait_checkpointed(pool, name)
            await sim.control("stats/reset")
        await server.restart()
        for sim in (pulled, edge):
            await sim.request("POST", "/api/v1/namespaces/default/configmaps",
                              {"metadata": {"name": "after-restart"}, "data": {"k": "v"}})
            dump = await sim.request("GET", "/_kubesim/dump")  # not counted as a LIST
            victim = next(o for o in dump["objects"] if o["resource"] == "pods")
            await sim.request("DELETE", f"/api/v1/namespaces/{victim['namespace']}/pods/{victim['name']}")
        for name, sim in (("pulled", pulled), ("edge", edge)):
            await wait_converged(pool, name, sim.url)
            stats = await sim.stats()
            assert list_requests(stats) == 0, (name, stats["resources"])
        # The restarted syncer's pull informers watch again from their checkpoints; the
        # agent's kept watching all along and only waited for the syncer to answer.
        assert (await pulled.stats())["requests"].get("watch", 0) > 0
