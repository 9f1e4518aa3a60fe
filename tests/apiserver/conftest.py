"""Read API fixtures: a store filled through the ingest core, and the API on a real port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest_asyncio
from aiohttp import web

from apiserver.app import build_app
from syncer.ingest import Store
from tests.access import AUTH, granted, tls_files
from tests.factories import DEPLOYMENTS, NODES, PODS, pod
from tests.serving import serve_app

CLUSTERS = ("east", "west", "edge")
NAMESPACES = ("default", "payments", "web")


@dataclass
class Api:
    url: str
    session: aiohttp.ClientSession

    async def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.session.request(method, self.url + path, params=params, headers=headers) as resp:
            raw = await resp.read()
            return resp.status, orjson.loads(raw) if raw else None, resp

    async def get(self, path: str, **params: str) -> tuple[int, Any]:
        status, body, _ = await self.request("GET", path, params=params)
        return status, body


@contextlib.asynccontextmanager
async def serving(app: web.Application, *, tls: Path | None = None) -> AsyncIterator[Api]:
    """``app`` on a real port, with a client session for it that carries the test token
    (with ``tls``, a directory for a certificate: over https, which kubectl needs to send it)."""
    server, client = (tls_files(tls)[1:] if tls is not None else (None, None))
    runner, url = await serve_app(app, ssl_context=server)
    try:
        connector = aiohttp.TCPConnector(ssl=client) if client is not None else None
        async with aiohttp.ClientSession(headers=AUTH, connector=connector) as session:
            yield Api(url=url, session=session)
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def watching(api: Api, path: str, headers: dict[str, str] | None = None,
                   **params: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    """A watch whose events arrive in a queue while the body runs."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    opened = asyncio.Event()

    async def read() -> None:
        async with api.session.get(api.url + path, params={"watch": "1", **params},
                                   headers=headers or {}) as resp:
            assert resp.status == 200
            opened.set()
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    queue.put_nowait(orjson.loads(line))

    task = asyncio.create_task(read())
    try:
        await asyncio.wait_for(opened.wait(), 30)
        yield queue
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def next_events(queue: asyncio.Queue[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(queue.get(), 30) for _ in range(n)]


@pytest_asyncio.fixture
async def tls_api(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """The API over https (its certificate in ``tmp_path``), for kubectl."""
    async with serving(build_app(database_url=db_url, access=granted()), tls=tmp_path) as served:
        yield served


@pytest_asyncio.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with serving(build_app(database_url=db_url, access=granted())) as served:
        yield served


def deployment(name: str, namespace: str, rv: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "uid": f"d-{namespace}-{name}",
                         "resourceVersion": str(rv), "creationTimestamp": "2026-01-02T03:04:05Z",
                         "labels": {"app": name}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2}}


def node(name: str, rv: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": f"n-{name}", "resourceVersion": str(rv),
                         "creationTimestamp": "2026-01-02T03:04:05Z", "labels": {}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def cluster_pods(cluster: str, count: int) -> list[dict[str, Any]]:
    """``count`` pods per namespace; labels vary so selectors have something to choose."""
    out = []
    for ns in NAMESPACES:
        for i in range(count):
            tier = "front" if i % 3 == 0 else "back"
            out.append(pod(f"{ns[:3]}-{i:03d}", 100 + i, namespace=ns,
                           uid=f"{cluster}-{ns}-{i}", labels={"app": f"app{i % 4}", "tier": tier},
                           phase="Running" if i % 5 else "Pending",
                           spec={"nodeName": f"{cluster}-node-{i % 2}",
                                 "containers": [{"name": "c", "image": "nginx:1.27"}]}))
    return out


async def fill(pool: asyncpg.Pool, *, pods_per_namespace: int = 12) -> dict[str, list[dict[str, Any]]]:
    """Register three push clusters and sync pods, deployments and nodes into them."""
    store = Store(pool)
    synced: dict[str, list[dict[str, Any]]] = {}
    for cluster in CLUSTERS:
        await pool.execute("INSERT INTO clusters (name, mode) VALUES ($1, 'push')", cluster)
        pods = cluster_pods(cluster, pods_per_namespace)
        synced[cluster] = pods
        for rtype, items in ((PODS, pods),
                             (DEPLOYMENTS, [deployment("api", ns, 7) for ns in NAMESPACES]),
                             (NODES, [node(f"{cluster}-node-{i}", 3) for i in range(2)])):
            async with store.snapshot(cluster=cluster, rtype=rtype) as snap:
                await snap.add(items)
                await snap.end("1000")
    # The same deployment name in one namespace of one cluster only: a unique GET.
    async with store.snapshot(cluster="edge", rtype=DEPLOYMENTS) as snap:
        await snap.add([deployment("api", ns, 7) for ns in NAMESPACES] + [deployment("only", "web", 9)])
        await snap.end("1001")
    return synced


@pytest_asyncio.fixture
async def filled(pool: asyncpg.Pool) -> dict[str, list[dict[str, Any]]]:
    return await fill(pool)
