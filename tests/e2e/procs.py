"""Real processes for end-to-end tests: kubesim clusters, kubepedia servers, agents.

Every server binds port 0 and reports the port it got (kubesim in its ``--port-file``,
``kubepedia serve`` in its ``listening listener=NAME address=HOST:PORT`` log lines). A
port picked "free" by the test and passed on could be taken by another process first.
A restarted server listens again on the ports it reported, where its clients look.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson

T = TypeVar("T")
REPORT_WITHIN_S = 120.0  # a deadline for a process to report its port, not an expectation
LISTENING = re.compile(r" listening listener=(\S+) address=(\S+)")


@dataclass
class Proc:
    """A child process whose output goes to a log file (shown when a test fails)."""

    args: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None
    run_offset: int = 0  # where this run's output starts in the (appended) log

    async def start(self) -> None:
        self.run_offset = self.log.stat().st_size if self.log.exists() else 0
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

    def run_output(self) -> str:
        """What the current run wrote (the log keeps earlier runs above it)."""
        if not self.log.exists():
            return ""
        with self.log.open("rb") as handle:
            handle.seek(self.run_offset)
            return handle.read().decode(errors="replace")

    async def reported(self, find: Callable[[], T | None], *, what: str,
                       within: float = REPORT_WITHIN_S) -> T:
        """Poll ``find`` until it returns something; fail if the process exits first."""
        deadline = asyncio.get_running_loop().time() + within
        while (found := find()) is None:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"{self.log.name}: exited ({self.proc.returncode}) before"
                                     f" reporting {what}:\n{self.run_output()[-3000:]}")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{self.log.name}: no {what} after {within}s")
            await asyncio.sleep(0.1)
        return found

    def listening(self) -> dict[str, int]:
        """``listener -> port`` from this run's ``listening`` log lines."""
        return {m[1]: int(m[2].rsplit(":", 1)[1]) for m in LISTENING.finditer(self.run_output())}

    async def ports(self, *listeners: str) -> dict[str, int]:
        """The ports a ``kubepedia serve`` bound, once it has reported every one of them."""
        def all_reported() -> dict[str, int] | None:
            found = self.listening()
            return found if found.keys() >= set(listeners) else None

        return await self.reported(all_reported, what=f"its {', '.join(listeners)} ports")


async def wait_http(url: str, *, within: float = 60.0, ssl: Any = None) -> None:
    deadline = asyncio.get_running_loop().time() + within
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url, ssl=ssl) as resp:
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
        """A control call; fails the test unless kubesim says it did it (200)."""
        async with aiohttp.ClientSession() as session, session.post(
                f"{self.url}/_kubesim/{action}", params=params) as resp:
            body = orjson.loads(await resp.read())
            assert resp.status == 200, f"{action}: {resp.status} {body}"
            return body

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
    kubeconfig, port_file = tmp / f"{name}.kubeconfig", tmp / f"{name}.port"
    port_file.unlink(missing_ok=True)
    proc = Proc(["-m", "kubesim", "serve", "--port", "0", "--port-file", str(port_file), "--name", name,
                 "--generate", generate, "--seed", str(seed), "--kubeconfig-out", str(kubeconfig),
                 "--bookmark-interval", "1"],
                log=tmp / f"{name}.log")
    await proc.start()
    port = await proc.reported(lambda: _read_port(port_file), what="its port")
    url = f"http://127.0.0.1:{port}"
    await wait_http(url + "/version")
    return Sim(proc=proc, url=url, kubeconfig=kubeconfig)


def _read_port(path: Path) -> int | None:
    with contextlib.suppress(FileNotFoundError):
        return int(path.read_text())
    return None


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

    def api_client(self) -> aiohttp.ClientSession:
        """A session for the read API: its data dir's read token, over https trusting the
        certificate the server made there."""
        token = (self.data_dir / "read.token").read_text().strip()
        trusted = ssl.create_default_context(cafile=str(self.data_dir / "api-tls.crt"))
        return aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"},
                                     connector=aiohttp.TCPConnector(ssl=trusted))

    async def restart(self) -> None:
        assert await self.proc.stop() == 0, self.proc.output()[-3000:]
        await self.proc.start()
        await self.proc.ports("ingest", "api", "admin")  # fails at once if the process exits instead
        await wait_http(self.ingest + "/readyz")


async def start_server(tmp: Path, name: str, *, database_url: str, data_dir: Path | None = None,
                       env: dict[str, str] | None = None) -> Server:
    data_dir = data_dir or tmp / f"{name}-data"
    listeners = {"ingest": "--ingest-listen", "api": "--api-listen", "admin": "--admin-listen"}
    args = ["-m", "kubepedia", "serve", "--database-url", database_url, "--data-dir", str(data_dir)]
    for flag in listeners.values():
        args += [flag, "127.0.0.1:0"]
    proc = Proc(args, log=tmp / f"{name}.log", env=env or {})
    await proc.start()
    ports = await proc.ports(*listeners)
    for listener, flag in listeners.items():  # a restart listens where clients look
        proc.args[proc.args.index(flag) + 1] = f"127.0.0.1:{ports[listener]}"
    server = Server(proc=proc, ingest=f"http://127.0.0.1:{ports['ingest']}",
                    api=f"https://127.0.0.1:{ports['api']}", data_dir=data_dir,
                    admin_url=f"http://127.0.0.1:{ports['admin']}")
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


