"""The agent's pipeline against the real ingest server when the store is behind.

"Behind" is made real: a test session holds a lock on ``change_log`` that every write
transaction that logs a change waits for, and blocked writes of another cluster fill the
server's (narrowed) global write slots. The server then answers 429 to the agent, which
must keep its place and deliver everything once the lock is let go; or, when more changes
come than its buffer holds, drop them and re-derive the state with a fresh snapshot.
Either way the store ends equal to the cluster.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import asyncpg

import kubesim
from agent import metrics
from agent.events import KubeObject, RelistReason, WatchEvent
from agent.informer import InformerSettings
from agent.kubeclient import Connection, KubeClient
from agent.pipeline import PipelineSettings
from agent.push import HttpSink
from agent.runner import Runner
from agent.selection import Selection
from agent.sink import SinkBusy
from kube.resources import ResourceType
from kubesim.server import SimServer
from syncer.admission import Limits
from tests.convergence import wait_converged
from tests.factories import DEPLOYMENTS, NODES, PODS, pod
from tests.syncer.conftest import Ingest, serving

T = TypeVar("T")
DEADLINE_S = 90.0  # for conditions that come within seconds; only a failure waits this long
SLOTS = 2
GENERATE = {"namespaces": 2, "pods": 12, "deployments": 2, "configmaps": 12}


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"no {what} within {DEADLINE_S}s"
        await asyncio.sleep(0.1)


class CountingSink:
    """The agent's HttpSink, unchanged, with a count of the 429s it was answered per type."""

    def __init__(self, sink: HttpSink) -> None:
        self.sink = sink
        self.busy: Counter[str] = Counter()

    async def _counted(self, rtype: ResourceType, call: Awaitable[T]) -> T:
        try:
            return await call
        except SinkBusy:
            self.busy[rtype.key] += 1
            raise

    async def checkpoints(self) -> dict[str, str]:
        return await self.sink.checkpoints()

    async def snapshot_start(self, rtype: ResourceType, *, reason: RelistReason = "initial") -> str:
        return await self._counted(rtype, self.sink.snapshot_start(rtype, reason=reason))

    async def snapshot_page(self, rtype: ResourceType, snapshot_id: str, items: list[KubeObject]) -> None:
        await self._counted(rtype, self.sink.snapshot_page(rtype, snapshot_id, items))

    async def snapshot_end(self, rtype: ResourceType, snapshot_id: str, *, resource_version: str,
                           count: int) -> None:
        await self._counted(rtype, self.sink.snapshot_end(
            rtype, snapshot_id, resource_version=resource_version, count=count))

    async def changes(self, rtype: ResourceType, changes: list[WatchEvent], *, resource_version: str,
                      after: str | None = None) -> None:
        await self._counted(rtype, self.sink.changes(rtype, changes, resource_version=resource_version,
                                                     after=after))

    async def remove_type(self, rtype: ResourceType) -> None:
        await self._counted(rtype, self.sink.remove_type(rtype))


@dataclass
class Agent:
    runner: Runner
    sink: CountingSink

    async def told_busy(self, key: str | None = None) -> bool:
        """Has the ingest server answered 429 to the pipeline of ``key`` (or of any type)?"""
        return any(n for k, n in self.sink.busy.items() if key in (None, k))


@asynccontextmanager
async def agent(ingest: Ingest, sim: SimServer, *, pipeline: PipelineSettings | None = None,
                informer: InformerSettings | None = None) -> AsyncIterator[Agent]:
    """The agent's runner for cluster "edge", shipping to the ingest server over HTTP."""
    token = await ingest.register_push("edge")
    async with KubeClient(connection=Connection.plain(sim.url)) as client, \
            HttpSink(base_url=ingest.url, cluster="edge", token=token) as http_sink:
        sink = CountingSink(http_sink)
        runner = Runner(client=client, sink=sink, selection=Selection(discovery_refresh=60),
                        pipeline_settings=pipeline, informer_settings=informer)
        task = asyncio.create_task(runner.run(), name="agent")
        try:
            yield Agent(runner=runner, sink=sink)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def store_behind(ingest: Ingest, db_url: str, pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Every write transaction that logs a change waits for a lock on the change log (EXCLUSIVE
    lets reads through, no insert); blocked writes of another cluster hold all the write
    slots. Everything is let go on exit."""
    holder = await asyncpg.connect(db_url)
    await holder.execute("BEGIN")
    await holder.execute("LOCK TABLE change_log IN EXCLUSIVE MODE")
    token = await ingest.register_push("blocker")
    sink = HttpSink(base_url=ingest.url, cluster="blocker", token=token)

    async def block(rtype: ResourceType) -> None:
        while True:  # until admitted: a write of the agent may hold the slot for a moment
            try:
                change = WatchEvent(type="ADDED", object=_object(rtype.kind))
                return await sink.changes(rtype, [change], resource_version="1")
            except SinkBusy:
                await asyncio.sleep(0.1)

    blocked = [asyncio.create_task(block(rtype)) for rtype in (PODS, NODES, DEPLOYMENTS)[:SLOTS]]

    async def slots_held() -> bool:
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'relation' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND relation = 'change_log'::regclass")
        return bool(waiting >= SLOTS)

    try:
        await until(slots_held, "write transactions waiting for the change log")
        yield
    finally:
        await holder.close()  # lets the lock go
        await asyncio.gather(*blocked, return_exceptions=True)
        await sink.close()
    for task in blocked:
        task.result()  # they were only delayed


async def synced(pool: asyncpg.Pool, sim: SimServer, runner: Runner) -> None:
    """The store equals the cluster and every type's snapshot is complete (no snapshot
    call is still in flight to take a write slot)."""
    await wait_converged(pool, "edge", sim.url, within=DEADLINE_S)

    async def checkpointed() -> bool:
        done = await pool.fetchval("SELECT count(*) FROM sync_state WHERE cluster = 'edge'"
                                   " AND checkpoint IS NOT NULL AND phase = 'watching'")
        return bool(done == len(runner.types))

    await until(checkpointed, "checkpoint of every type")


def _object(kind: str) -> dict[str, object]:
    obj = pod(f"blocker-{kind.lower()}", 1)
    obj["kind"] = kind
    if kind == "Node":
        del obj["metadata"]["namespace"]
    else:
        obj["apiVersion"] = "apps/v1" if kind == "Deployment" else "v1"
    return obj


def _overflows(key: str) -> float:
    return float(metrics.BUFFER_OVERFLOWS.labels(key)._value.get())


async def _churn(sim: SimServer, *, create: int, delete: int, first: int = 0) -> None:
    """Create and delete ConfigMaps and delete a Pod through the API, as users do."""
    generated = [o for o in sim.sim.dump() if o["name"].startswith("config-")]
    pods = [o for o in sim.sim.dump() if o["resource"] == "pods"]
    async with aiohttp.ClientSession() as session:

        async def call(method: str, path: str, body: object = None) -> None:
            async with session.request(method, sim.url + path, json=body) as resp:
                assert resp.status < 300, await resp.text()

        for i in range(first, first + create):
            await call("POST", "/api/v1/namespaces/default/configmaps",
                       {"metadata": {"name": f"while-busy-{i}"}, "data": {"k": "v"}})
        for victim in generated[:delete]:
            await call("DELETE", f"/api/v1/namespaces/{victim['namespace']}/configmaps/{victim['name']}")
        await call("DELETE", f"/api/v1/namespaces/{pods[0]['namespace']}/pods/{pods[0]['name']}")


async def test_busy_store_is_429_and_the_agent_keeps_its_place(db_url: str, pool: asyncpg.Pool) -> None:
    async with serving(db_url, limits=Limits(write_slots=SLOTS)) as ingest, \
            kubesim.running(generate=GENERATE, seed=5) as sim, agent(ingest, sim) as edge:
        await synced(pool, sim, edge.runner)
        overflows = {t.key: _overflows(t.key) for t in edge.runner.types}
        sim.sim.stats.reset()
        async with store_behind(ingest, db_url, pool):
            await _churn(sim, create=3, delete=2)
            await until(edge.told_busy, "429 answer to the agent")
        await wait_converged(pool, "edge", sim.url, within=DEADLINE_S)
    lists = {verb: sim.sim.stats.by_verb.get(verb, 0) for verb in ("list", "watch-list")}
    assert lists == {"list": 0, "watch-list": 0}, "the agent kept its place: no relist"
    assert {key: _overflows(key) for key in overflows} == overflows, "nothing was dropped"


async def test_overflow_while_busy_drops_and_relists(db_url: str, pool: asyncpg.Pool) -> None:
    small = PipelineSettings(buffer_limit=5, sink_backoff_base=0.1, sink_backoff_cap=1.0)
    paged = InformerSettings(page_size=3, streaming_lists=False)
    async with serving(db_url, limits=Limits(write_slots=SLOTS)) as ingest, \
            kubesim.running(generate=GENERATE, seed=6) as sim, \
            agent(ingest, sim, pipeline=small, informer=paged) as edge:
        await synced(pool, sim, edge.runner)
        dropped = _overflows("configmaps")
        sim.sim.stats.reset()
        async with store_behind(ingest, db_url, pool):
            await _churn(sim, create=1, delete=0)
            await until(lambda: edge.told_busy("configmaps"), "429 answer to the agent")
            # More changes than the 5-object buffer holds while the store cannot take them;
            # the deletions among them are dropped with the buffer.
            await _churn(sim, create=12, delete=6, first=1)

            async def overflowed() -> bool:
                return _overflows("configmaps") > dropped

            await until(overflowed, "buffer dropped")
        await wait_converged(pool, "edge", sim.url, within=DEADLINE_S)
    assert sim.sim.stats.by_resource.get("list", Counter())["configmaps"] > 0, "re-derived by listing"
