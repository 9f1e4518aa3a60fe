"""The official kubernetes Python client (run in a thread: it is blocking)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes import client, config, watch

from kubesim.kubeconfig import write_kubeconfig
from kubesim.server import SimServer
from tests.kubesim.conftest import call, pod_body


def _core(sim: SimServer, tmp_path: Path) -> client.CoreV1Api:
    path = write_kubeconfig(tmp_path / "kubeconfig", sim.url)
    api_client = config.new_client_from_config(config_file=str(path))
    return client.CoreV1Api(api_client)


def _page_through(core: client.CoreV1Api) -> tuple[list[str], list[Any]]:
    names: list[str] = []
    remaining: list[Any] = []
    token = None
    while True:
        page = core.list_pod_for_all_namespaces(limit=5, _continue=token)
        names += [p.metadata.name for p in page.items]
        remaining.append(page.metadata.remaining_item_count)
        token = page.metadata._continue
        if not token:
            return names, remaining


async def test_paged_list(sim: SimServer, tmp_path: Path) -> None:
    core = _core(sim, tmp_path)
    try:
        names, remaining = await asyncio.to_thread(_page_through, core)
    finally:
        core.api_client.close()
    assert len(names) == len(set(names)) == 12
    assert remaining == [7, 2, None]


def _watch(core: client.CoreV1Api, rv: str, count: int) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    stream = watch.Watch()
    for event in stream.stream(core.list_namespaced_pod, "default", resource_version=rv,
                               timeout_seconds=5, allow_watch_bookmarks=True):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) >= count:
            stream.stop()
    return seen


async def test_watch_stream(sim: SimServer, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    core = _core(sim, tmp_path)
    try:
        _, listed = await call(http, "GET", sim.url + "/api/v1/namespaces/default/pods")
        rv = listed["metadata"]["resourceVersion"]
        reader = asyncio.create_task(asyncio.to_thread(_watch, core, rv, 3))
        pods = sim.url + "/api/v1/namespaces/default/pods"
        await call(http, "POST", pods, pod_body("py1"))
        await call(http, "POST", pods, pod_body("py2"))
        await call(http, "DELETE", pods + "/py1")
        seen = await asyncio.wait_for(reader, 10)
    finally:
        core.api_client.close()
    assert seen == [("ADDED", "py1"), ("ADDED", "py2"), ("DELETED", "py1")]
