"""Acceptance: three clusters (two pulled, one pushed by an agent) under load and faults.

The load generator writes 300 events/s in total for 30 s while the test drops watches,
compacts history (410), restarts a kubesim, the syncer, PostgreSQL and the agent, and
registers a CRD. Once the load stops and sync settles, the store must equal each
cluster exactly: the same objects by (type, namespace, name, uid) at the same
resourceVersion, and nothing else.

Each fault is checked to have happened, or the test would prove nothing: kubesim
answers every control call with 200 (``Sim.control``) and says what it did (watches
dropped), a compacted cluster is listed again (its watches got 410), a restarted
kubesim is watched again, the restarted PostgreSQL is a new postmaster. That restarts
of the agent and the syncer resume without listing is checked in ``test_resume.py``,
where no other fault can cause a LIST.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from syncer import embedded
from syncer.db import create_pool
from tests.convergence import wait_converged
from tests.e2e.procs import (
    Proc,
    Server,
    Sim,
    agent_proc,
    cleanup,
    list_requests,
    register,
    start_server,
    start_sim,
)

LOAD_SECONDS = 30
RATE_PER_CLUSTER = 100
DEADLINE_S = 60.0  # for a fault's effect to show; only a failure waits this long
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


async def until(what: str, condition: Callable[[], Awaitable[bool]]) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"{what}: not seen within {DEADLINE_S}s"
        await asyncio.sleep(0.2)


async def requests(sim: Sim, verb: str) -> int:
    return int((await sim.stats())["requests"].get(verb, 0))


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

    async def drop(sim: Sim) -> None:
        async def watched() -> bool:
            return int((await sim.stats())["openWatches"]) > 0

        await until(f"a watch on {sim.url} to drop", watched)
        assert (await sim.control("drop-watches"))["dropped"] > 0, sim.url

    async def drop_all() -> None:
        for sim in sims:
            await drop(sim)

    async def expire(sim: Sim) -> None:
        """Compact history and drop the watches: they come back with 410 and list again.

        kubesim holds requests and watch delivery meanwhile (a stall): a watch that got an
        event or a bookmark between the compaction and the drop would resume past the
        compaction, without a 410, and the LIST this checks for would be up to chance."""
        lists = list_requests(await sim.stats())
        await sim.control("stall", seconds="2")
        await sim.control("compact")
        await drop(sim)

        async def listed_again() -> bool:
            return list_requests(await sim.stats()) > lists

        await until(f"a LIST of {sim.url} after its compaction", listed_again)

    async def restart_sim(sim: Sim) -> None:
        watches = await requests(sim, "watch")
        assert (await sim.control("restart", downSeconds="1"))["restarting"] is True

        async def watched_again() -> bool:
            with contextlib.suppress(aiohttp.ClientError):  # still down
                return await requests(sim, "watch") > watches
            return False

        await until(f"watches of {sim.url} after its restart", watched_again)

    server_back = asyncio.Event()

    async def restart_server() -> None:
        await server.restart()
        server_back.set()

    async def restart_postgres() -> None:
        # Not while the syncer starts: a server whose database goes away during startup
        # exits (as it should), and this test is about faults of a running system.
        await server_back.wait()
        before = postmaster_pid(pg)
        await asyncio.to_thread(embedded.stop, pg)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(embedded.start, pg)
        assert postmaster_pid(pg) != before, "PostgreSQL was not restarted"

    async def restart_agent() -> None:
        assert await agent.stop() == 0, agent.output()[-3000:]
        await agent.start()

    async def add_crds() -> None:
        await add_widgets(pull_b, 5)
        await add_widgets(edge, 5)

    async with asyncio.TaskGroup() as faults:  # one failing cancels the others
        faults.create_task(at(3, start, drop_all))
        faults.create_task(at(6, start, lambda: expire(pull_a)))
        faults.create_task(at(9, start, lambda: restart_sim(edge)))
        faults.create_task(at(12, start, restart_server))
        faults.create_task(at(16, start, restart_postgres))
        faults.create_task(at(20, start, restart_agent))
        faults.create_task(at(23, start, add_crds))
        faults.create_task(at(26, start, lambda: expire(edge)))
    for load in loads:
        code = await asyncio.wait_for(load.proc.wait(), LOAD_SECONDS + 60)  # type: ignore[union-attr]
        assert code == 0, load.output()[-2000:]
    print("load:", *(load.output().strip().splitlines()[-1] for load in loads), file=sys.stderr)


def postmaster_pid(pg: embedded.EmbeddedPostgres) -> int:
    return int((pg.pgdata / "postmaster.pid").read_text().split()[0])


async def _check_log_consistency(pool: asyncpg.Pool) -> None:
    """The change log ends in each live object's current version."""
    stale = await pool.fetchval(
        "SELECT count(*) FROM resources r WHERE r.seq <> (SELECT max(seq) FROM change_log c"
        " WHERE c.cluster = r.cluster AND c.grp = r.grp AND c.resource = r.resource"
        " AND c.namespace = r.namespace AND c.name = r.name)")
    assert stale == 0
