"""Kubesim clusters synced into the store by the informers pull mode runs, and the read API
serving them: the member clusters of the end-to-end read tests.

Two steps, so that a test can shape the clusters (a CRD, its objects) before they are
synced: :func:`simulated` runs the clusters, :func:`synced` syncs and serves them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import yaml

from agent.kubeclient import Connection, KubeClient
from agent.runner import Runner
from agent.selection import Selection
from apiserver.app import build_app
from kubepedia.kubeconfig import document
from kubepedia.tls import certificate_pem
from kubesim.server import SimServer, running
from syncer.ingest import Store
from syncer.sink import StoreSink
from tests.access import AUTH, TEST_TOKEN, granted, tls_files
from tests.serving import serve_app

JSON = dict[str, Any]
NAMES = ("east", "west")


@dataclass
class Fleet:
    sims: dict[str, SimServer]
    api: str
    kubeconfig: Path  # contexts for the read API: every cluster, and one each
    session: aiohttp.ClientSession
    pool: asyncpg.Pool

    async def sim(self, cluster: str, method: str, path: str, body: Any = None,
                  content_type: str = "application/json") -> JSON:
        """A request to a member cluster, which must succeed."""
        async with self.session.request(method, self.sims[cluster].url + path, json=body,
                                        headers={"Content-Type": content_type}) as resp:
            data: JSON = await resp.json()
            assert resp.status < 300, data
            return data

    async def sim_count(self, path: str) -> int:
        """How many items the member clusters list at ``path``, together."""
        return sum([len(await self.sim_items(name, path)) for name in self.sims])

    async def sim_items(self, cluster: str, path: str) -> list[JSON]:
        items: list[JSON] = (await self.sim(cluster, "GET", path))["items"]
        return items


@contextlib.asynccontextmanager
async def simulated(generate: Mapping[str, int]) -> AsyncIterator[dict[str, SimServer]]:
    """Kubesim clusters east and west, each generated from its own seed."""
    async with contextlib.AsyncExitStack() as stack:
        yield {name: await stack.enter_async_context(running(generate=generate, seed=seed))
               for seed, name in enumerate(NAMES, start=1)}


@contextlib.asynccontextmanager
async def synced(sims: dict[str, SimServer], *, db_url: str, pool: asyncpg.Pool, tmp: Path,
                 counted: str, selection: Selection | None = None) -> AsyncIterator[Fleet]:
    """``sims`` registered as push clusters and synced (``selection`` of their types), until
    every type watches and the store holds what each cluster lists of ``counted`` (a core
    resource); then the read API on a real port, and a kubeconfig for it."""
    async with contextlib.AsyncExitStack() as stack:
        cert, server_tls, client_tls = tls_files(tmp)  # kubectl sends its token over https only
        session = await stack.enter_async_context(
            aiohttp.ClientSession(headers=AUTH, connector=aiohttp.TCPConnector(ssl=client_tls)))
        tasks = []
        for name, sim in sims.items():
            await pool.execute("INSERT INTO clusters (name, mode) VALUES ($1, 'push')", name)
            client = await stack.enter_async_context(KubeClient(connection=Connection.plain(sim.url)))
            sink = StoreSink(store=Store(pool), cluster=name)
            runner = Runner(client=client, sink=sink, selection=selection)
            tasks.append(asyncio.create_task(runner.run()))
        try:
            fleet = Fleet(sims=sims, api="", kubeconfig=tmp / "kubeconfig", session=session, pool=pool)
            await _until_synced(fleet, counted=counted)
            api_runner, fleet.api = await serve_app(build_app(database_url=db_url, access=granted()),
                                                    ssl_context=server_tls)
            doc = document(fleet.api, sorted(sims), token=TEST_TOKEN, ca=certificate_pem(cert))
            fleet.kubeconfig.write_text(yaml.safe_dump(doc))
            try:
                yield fleet
            finally:
                await api_runner.cleanup()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _until_synced(fleet: Fleet, *, counted: str) -> None:
    expected = {name: len(await fleet.sim_items(name, f"/api/v1/{counted}")) for name in fleet.sims}
    states: list[asyncpg.Record] = []
    counts: dict[str, int] = {}
    for _ in range(600):
        states = await fleet.pool.fetch("SELECT cluster, phase FROM sync_state")
        counts = dict(await fleet.pool.fetch("SELECT cluster, count(*) FROM resources WHERE resource = $1"
                                             " GROUP BY cluster", counted))
        if states and all(s["phase"] == "watching" for s in states) and counts == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not synced: {states}, {counts} != {expected}")
