"""Agent fixtures: a real kubesim server per test and a client for it."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest_asyncio

from agent.events import InformerMessage
from agent.kubeclient import Connection, KubeClient
from kube.resources import ResourceType
from kubesim.server import SimServer
from kubesim.simulator import SimConfig, Simulator

CONFIGMAPS = ResourceType(group="", version="v1", resource="configmaps", kind="ConfigMap", namespaced=True)
SECRETS = ResourceType(group="", version="v1", resource="secrets", kind="Secret", namespaced=True)


class Cluster:
    """A running kubesim plus helpers to change its objects over HTTP."""

    def __init__(self, server: SimServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.url = server.url
        self.session = session

    async def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        # A BytesIO body: aiohttp warns about (and tests turn into errors) big raw bytes.
        data = None if body is None else io.BytesIO(orjson.dumps(body))
        headers = {"Content-Type": "application/json"}
        async with self.session.request(method, self.url + path, data=data, headers=headers) as response:
            data: dict[str, Any] = await response.json()
            assert response.status < 300, data
            return data

    async def namespace(self, name: str) -> None:
        body = {"metadata": {"name": name}}
        async with self.session.post(f"{self.url}/api/v1/namespaces", json=body) as response:
            assert response.status < 300 or response.status == 409, await response.text()

    async def configmap(self, name: str, ns: str = "default", **data: str) -> dict[str, Any]:
        body = {"metadata": {"name": name}, "data": data}
        return await self.request("POST", f"/api/v1/namespaces/{ns}/configmaps", body)

    async def update_configmap(self, name: str, ns: str = "default", **data: str) -> None:
        body = {"data": data}
        async with self.session.patch(
            f"{self.url}/api/v1/namespaces/{ns}/configmaps/{name}",
            json=body,
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response:
            assert response.status < 300, await response.text()

    async def delete_configmap(self, name: str, ns: str = "default") -> None:
        await self.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/{name}")

    async def control(self, action: str, **params: str) -> None:
        async with self.session.post(f"{self.url}/_kubesim/{action}", params=params) as resp:
            assert resp.status < 300, await resp.text()

    def requests(self, verb: str, resource: str = "configmaps") -> int:
        return self.server.sim.stats.by_resource.get(verb, {}).get(resource, 0)


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    server = SimServer(Simulator(SimConfig(bookmark_interval=0.3)))
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            cluster = Cluster(server, session)
            await cluster.namespace("default")
            yield cluster
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def kube(cluster: Cluster) -> AsyncIterator[KubeClient]:
    async with KubeClient(connection=Connection.plain(cluster.url)) as client:
        yield client


async def take(
    stream: AsyncIterator[InformerMessage], count: int, *, within: float = 30.0
) -> list[InformerMessage]:
    """The next ``count`` messages of a stream, or fail after ``within`` seconds (a deadline)."""
    out: list[InformerMessage] = []
    async with asyncio.timeout(within):
        async for message in stream:
            out.append(message)
            if len(out) >= count:
                break
    return out


async def take_until(
    stream: AsyncIterator[InformerMessage], predicate: Any, *, within: float = 30.0
) -> list[InformerMessage]:
    """Messages up to and including the first one matching ``predicate``."""
    out: list[InformerMessage] = []
    async with asyncio.timeout(within):
        async for message in stream:
            out.append(message)
            if predicate(message):
                break
    return out
