"""Real processes for end-to-end tests: kubesim clusters, kubepedia servers, agents."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    """A child process whose output goes to a log file (shown when a test fails)."""

    args: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        handle = self.log.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *self.args, stdout=handle, stderr=handle,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        handle.close()

    async def stop(self, sig: int = signal.SIGTERM, *, within: float = 20.0) -> int | None:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


async def wait_http(url: str, *, within: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{url} did not answer within {within}s")
            await asyncio.sleep(0.2)


@dataclass
class Sim:
    proc: Proc
    url: str
    kubeconfig: Path

    async def control(self, action: str, **params: str) -> Any:
        async with aiohttp.ClientSession() as session, session.post(
                f"{self.url}/_kubesim/{action}", params=params) as resp:
            return orjson.loads(await resp.read())

    async def stats(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(self.url + "/_kubesim/stats") as resp:
            data: dict[str, Any] = orjson.loads(await resp.read())
            return data

    async def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.request(
                method, self.url + path, data=orjson.dumps(body) if body is not None else None,
                headers={"Content-Type": "application/json"}) as resp:
            data: dict[str, Any] = orjson.loads(await resp.read())
            assert resp.status < 300, data
            return data


async def start_sim(tmp: Path, name: str, *, generate: str, seed: int) -> Sim:
    port = free_port()
    kubeconfig = tmp / f"{name}.kubeconfig"
    proc = Proc(["-m", "kubesim", "serve", "--port", str(port), "--name", name, "--generate", generate,
                 "--seed", str(seed), "--kubeconfig-out", str(kubeconfig), "--bookmark-interval", "1"],
                log=tmp / f"{name}.log")
    await proc.start()
    url = f"http://127.0.0.1:{port}"
    await wait_http(url + "/version")
    return Sim(proc=proc, url=url, kubeconfig=kubeconfig)


@dataclass
class Server:
    proc: Proc
    ingest: str
    api: str
    data_dir: Path
    admin_url: str

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        token = (self.data_dir / "admin.token").read_text().strip()
        async with aiohttp.ClientSession() as session, session.request(
                method, self.admin_url + path, data=orjson.dumps(body) if body is not None else None,
                headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status, orjson.loads(await resp.read())

    async def restart(self) -> None:
        assert await self.proc.stop() == 0, self.proc.output()[-3000:]
        await self.proc.start()
        await wait_http(self.ingest + "/readyz")


async def start_server(tmp: Path, name: str, *, database_url: str, data_dir: Path | None = None,
                       env: dict[str, str] | None = None) -> Server:
    ingest, api, admin = free_port(), free_port(), free_port()
    data_dir = data_dir or tmp / f"{name}-data"
    proc = Proc(["-m", "kubepedia", "serve", "--database-url", database_url, "--data-dir", str(data_dir),
                 "--ingest-listen", f"127.0.0.1:{ingest}", "--api-listen", f"127.0.0.1:{api}",
                 "--admin-listen", f"127.0.0.1:{admin}"],
                log=tmp / f"{name}.log", env=env or {})
    await proc.start()
    server = Server(proc=proc, ingest=f"http://127.0.0.1:{ingest}", api=f"http://127.0.0.1:{api}",
                    data_dir=data_dir, admin_url=f"http://127.0.0.1:{admin}")
    await wait_http(server.ingest + "/readyz")
    return server


def agent_proc(tmp: Path, *, cluster: str, server: Server, token: str, kubeconfig: Path) -> Proc:
    return Proc(["-m", "kubepedia", "agent", "--cluster", cluster, "--syncer", server.ingest,
                 "--kubeconfig", str(kubeconfig), "--discovery-interval", "2"],
                log=tmp / f"agent-{cluster}.log", env={"KUBEPEDIA_AGENT_TOKEN": token})


@contextlib.asynccontextmanager
async def cleanup(*procs: Proc) -> AsyncIterator[list[Proc]]:
    """Stop every process at the end; on failure, print their logs' tails."""
    tracked = list(procs)
    try:
        yield tracked
    except BaseException:
        for p in tracked:
            print(f"----- {p.log.name} -----\n{p.output()[-4000:]}")
        raise
    finally:
        for p in reversed(tracked):
            await p.stop(within=10)


async def register(server: Server, name: str, *, kubeconfig: Path | None = None,
                   discovery_refresh: float = 2.0) -> str | None:
    body: dict[str, Any] = {"name": name, "mode": "pull" if kubeconfig else "push",
                            "settings": {"selection": {"discoveryRefreshSeconds": discovery_refresh}}}
    if kubeconfig is not None:
        body["kubeconfig"] = await asyncio.to_thread(kubeconfig.read_text)
    status, answer = await server.admin("POST", "/admin/v1/clusters", body)
    assert status == 201, answer
    token: str | None = answer["token"]
    return token


def list_requests(stats: dict[str, Any]) -> int:
    """LIST requests of any form: plain lists and watches that open with the full state."""
    requests = stats["requests"]
    return int(requests.get("list", 0)) + int(requests.get("watch-list", 0))


