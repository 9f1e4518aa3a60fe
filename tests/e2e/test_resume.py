"""Restarts resume from checkpoints: no relist; and two syncers share pull clusters."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg

from syncer.ingest import advisory_holder
from syncer.pull import ownership_key
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


async def test_two_syncers_one_owner_and_takeover(tmp_path: Path, db_url: str, pool: asyncpg.Pool) -> None:
    sim = await start_sim(tmp_path, "pulled", generate="namespaces=2,pods=30", seed=2)
    async with cleanup(sim.proc) as procs:
        # Servers sharing a database share the key file that seals kubeconfigs (here: one data dir).
        shared = tmp_path / "shared-data"
        a = await start_server(tmp_path, "syncer-a", database_url=db_url, data_dir=shared)
        procs.append(a.proc)
        b = await start_server(tmp_path, "syncer-b", database_url=db_url, data_dir=shared)
        procs.append(b.proc)
        await register(a, "pulled", kubeconfig=sim.kubeconfig)
        await wait_converged(pool, "pulled", sim.url)
        key = ownership_key("pulled")
        owner = await _owner_pid(pool, key)
        pids = {a.proc.proc.pid: a, b.proc.proc.pid: b}  # type: ignore[union-attr]
        assert owner in pids, f"lock held by {owner}, not one of {sorted(pids)}"
        holders = await pool.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND objid = ($1::bigint & 4294967295)::oid", key)
        assert holders == 1
        survivor = b if pids[owner] is a else a
        await pids[owner].proc.stop(signal.SIGKILL)
        started = asyncio.get_running_loop().time()
        while await _owner_pid(pool, key) != survivor.proc.proc.pid:  # type: ignore[union-attr]
            assert asyncio.get_running_loop().time() - started < 15, "no takeover within 15 s"
            await asyncio.sleep(0.2)
        await sim.request("POST", "/api/v1/namespaces/default/configmaps",
                          {"metadata": {"name": "after-takeover"}, "data": {"k": "v"}})
        await wait_converged(pool, "pulled", sim.url)


async def _owner_pid(pool: asyncpg.Pool, key: int) -> int | None:
    """The OS pid of the kubepedia process holding a pull cluster (from its connection's name)."""
    backend = await advisory_holder(pool, key)
    if backend is None:
        return None
    name = await pool.fetchval("SELECT application_name FROM pg_stat_activity WHERE pid = $1", backend)
    return int(name.rsplit(":", 1)[1]) if name else None
