"""Acceptance: three clusters (two pulled, one pushed by an agent) under load and faults.

The load generator writes 300 events/s in total for 30 s while the test drops watches,
compacts history (410), restarts a kubesim, the syncer, PostgreSQL and the agent, and
registers a CRD. Once the load stops and sync settles, the store must equal each
cluster exactly: the same objects by (type, namespace, name, uid) at the same
resourceVersion, and nothing else.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from syncer import embedded
from syncer.db import create_pool
from tests.convergence import wait_converged
from tests.e2e.procs import Proc, Server, Sim, agent_proc, cleanup, register, start_server, start_sim

LOAD_SECONDS = 30
RATE_PER_CLUSTER = 100
WIDGETS_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]},
}


async def add_widgets(sim: Sim, count: int) -> None:
    await sim.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGETS_CRD)
    await asyncio.sleep(0.5)
    for i in range(count):
        await sim.request("POST", "/apis/example.com/v1/namespaces/default/widgets", {
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": f"w{i}"},
            "spec": {"size": i}})


def load_proc(tmp: Path, sim: Sim, seed: int) -> Proc:
    return Proc(["-m", "kubesim", "load", "--server", sim.url, "--rate", str(RATE_PER_CLUSTER),
                 "--duration", str(LOAD_SECONDS), "--seed", str(seed)], log=tmp / f"load-{seed}.log")


async def at(second: float, start: float, what: Callable[[], Awaitable[object]]) -> None:
    await asyncio.sleep(max(0.0, start + second - asyncio.get_running_loop().time()))
    await what()


@pytest.mark.timeout(300)
async def test_store_equals_clusters_after_load_and_faults(tmp_path: Path) -> None:
    pg_dir = tempfile.TemporaryDirectory(prefix="kubepedia-e2e-pg-")
    os.chmod(pg_dir.name, 0o711)  # under root, the server's service user passes through it
    pg = embedded.EmbeddedPostgres(data_dir=Path(pg_dir.name))
    await asyncio.to_thread(embedded.start, pg)
    sims = [await start_sim(tmp_path, name, generate="namespaces=4,pods=150,deployments=10,nodes=5",
                            seed=i) for i, name in enumerate(["pull-a", "pull-b", "edge"])]
    pull_a, pull_b, edge = sims
    try:
        async with cleanup(*(s.proc for s in sims)) as procs:
            server = await start_server(tmp_path, "syncer", database_url=pg.url)
            procs.append(server.proc)
            await register(server, "pull-a", kubeconfig=pull_a.kubeconfig)
            await register(server, "pull-b", kubeconfig=pull_b.kubeconfig)
            token = await register(server, "edge")
            assert token is not None
            agent = agent_proc(tmp_path, cluster="edge", server=server, token=token,
                               kubeconfig=edge.kubeconfig)
            procs.append(agent)
            await agent.start()
            await _run_load_with_faults(tmp_path, sims, server, agent, pg, procs)
            pool = await create_pool(pg.url, min_size=1, max_size=2)
            try:
                for name, sim in (("pull-a", pull_a), ("pull-b", pull_b), ("edge", edge)):
                    await wait_converged(pool, name, sim.url, within=90)
                await _check_log_consistency(pool)
            finally:
                await pool.close()
    finally:
        await asyncio.to_thread(embedded.stop, pg)
        pg_dir.cleanup()


async def _run_load_with_faults(tmp: Path, sims: list[Sim], server: Server, agent: Proc,
                                pg: embedded.EmbeddedPostgres, procs: list[Proc]) -> None:
    pull_a, pull_b, edge = sims
    loads = [load_proc(tmp, sim, seed=10 + i) for i, sim in enumerate(sims)]
    procs.extend(loads)
    for load in loads:
        await load.start()
    start = asyncio.get_running_loop().time()

    async def drop_all() -> None:
        for sim in sims:
            await sim.control("drop-watches")

    async def expire(sim: Sim) -> None:
        await sim.control("compact")
        await sim.control("drop-watches")

    async def restart_postgres() -> None:
        await asyncio.to_thread(embedded.stop, pg)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(embedded.start, pg)

    async def restart_agent() -> None:
        assert await agent.stop() == 0, agent.output()[-3000:]
        await agent.start()

    async def add_crds() -> None:
        await add_widgets(pull_b, 5)
        await add_widgets(edge, 5)

    await asyncio.gather(
        at(3, start, drop_all),
        at(6, start, lambda: expire(pull_a)),
        at(9, start, lambda: edge.control("restart", downSeconds="1")),
        at(12, start, server.restart),
        at(16, start, restart_postgres),
        at(20, start, restart_agent),
        at(23, start, add_crds),
        at(26, start, lambda: expire(edge)),
    )
    for load in loads:
        code = await asyncio.wait_for(load.proc.wait(), LOAD_SECONDS + 60)  # type: ignore[union-attr]
        assert code == 0, load.output()[-2000:]
    print("load:", *(load.output().strip().splitlines()[-1] for load in loads), file=sys.stderr)


async def _check_log_consistency(pool: asyncpg.Pool) -> None:
    """The change log ends in each live object's current version."""
    stale = await pool.fetchval(
        "SELECT count(*) FROM resources r WHERE r.seq <> (SELECT max(seq) FROM change_log c"
        " WHERE c.cluster = r.cluster AND c.grp = r.grp AND c.resource = r.resource"
        " AND c.namespace = r.namespace AND c.name = r.name)")
    assert stale == 0
