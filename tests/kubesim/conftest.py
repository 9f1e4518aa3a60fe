"""Fixtures: a real kubesim HTTP server per test, an HTTP client, kubectl."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from kubesim.kubeconfig import write_kubeconfig
from kubesim.server import SimServer, running
from kubesim.simulator import SimConfig

JSON = dict[str, Any]
KUBECTL = "/usr/bin/kubectl"


def fast_config(**overrides: Any) -> SimConfig:
    """Short timers so bookmark, expiry and timeout rules are testable quickly."""
    values: dict[str, Any] = {"bookmark_interval": 0.2, "rv_wait": 0.3, "continue_ttl": 30.0}
    values.update(overrides)
    return SimConfig(**values)


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks behind."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() - before if not t.done() and t is not current]
    assert not leaked, f"pending tasks left behind: {leaked}"


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with running(
        generate={"namespaces": 2, "nodes": 2, "deployments": 2, "pods": 12}, seed=7,
        config=fast_config(),
    ) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None,
    content_type: str = "application/json", **params: Any,
) -> tuple[int, JSON]:
    data = None if body is None else orjson.dumps(body)
    query = {k: str(v) for k, v in params.items()}
    headers = {"Content-Type": content_type}
    async with session.request(method, url, data=data, params=query, headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read())


async def watch_lines(
    session: aiohttp.ClientSession, url: str, *, count: int | None = None,
    until_type: str | None = None, within: float = 30.0, headers: dict[str, str] | None = None,
    **params: Any,
) -> list[JSON]:
    """Read watch events until ``count`` arrived, ``until_type`` was seen, or the stream ends."""
    query = {"watch": "true", **{k: str(v) for k, v in params.items()}}
    events: list[JSON] = []
    async with asyncio.timeout(within):
        async with session.get(url, params=query, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    events.append(orjson.loads(line))
                    done_count = count is not None and len(events) >= count
                    if done_count or (until_type and events[-1]["type"] == until_type):
                        return events
    return events


async def wait_until(predicate: Callable[[], bool], within: float = 30.0) -> None:
    """Poll in-process server state that has no event to await."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def pod_body(name: str, labels: dict[str, str] | None = None, node: str = "") -> JSON:
    spec: JSON = {"containers": [{"name": "app", "image": "nginx:1.25"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


@dataclass
class Kubectl:
    kubeconfig: Path
    cache_dir: Path

    async def run(self, *args: str, within: float = 30.0, stdin: bytes | None = None) -> str:
        """Run kubectl without blocking the event loop that serves it."""
        proc = await asyncio.create_subprocess_exec(
            KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache_dir),
            *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "HOME": str(self.cache_dir)},
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin), within)
        assert proc.returncode == 0, f"kubectl {' '.join(args)} failed: {err.decode()}"
        return out.decode()


@pytest.fixture
def kubectl(sim: SimServer, tmp_path: Path) -> Kubectl:
    config = write_kubeconfig(tmp_path / "kubeconfig", sim.url)
    return Kubectl(config, tmp_path / "cache")
