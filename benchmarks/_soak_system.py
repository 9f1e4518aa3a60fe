"""The soak benchmark's system under test, and the faults done to it.

One kubesim process serves the member clusters; PostgreSQL is an embedded server started
here (not by ``kubepedia serve``), so that it can be stopped and started underneath a
running syncer, as ``tests/e2e/test_faults.py`` does; ``kubepedia serve`` (syncer and read
API in one process) uses it by URL, with its own data dir and, after the first start,
the ports it first bound, so that a restarted syncer is found where agents and readers
look. Every cluster but the last is pulled; the last is pushed by an agent.

Faults, in rotation (``FAULTS``): drop every watch of every cluster; compact one
cluster's history and drop its watches (its informers must list again after a 410);
SIGKILL the syncer's process group (the syncer and its decoder processes) and start it
again on the same data dir; stop PostgreSQL and start it again; stall one cluster (hold
its requests and watch delivery) for 10 s. Each is logged with its time; the windows in
which PostgreSQL or the syncer was down are kept for the accounting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks._procs import Procs, listening_ports, log, postmaster_pid
from benchmarks._soak_readers import ApiAccess
from syncer import embedded

READY_S = 180.0
STALL_S = 10.0
PG_DOWN_S = 1.0  # PostgreSQL stays stopped this long before it starts again
KUBESIM_START_S = 300.0


@dataclass(frozen=True, kw_only=True)
class Member:
    name: str
    url: str
    kubeconfig: Path


@dataclass(kw_only=True)
class System:
    procs: Procs
    work: Path
    pg: embedded.EmbeddedPostgres
    members: list[Member]
    kubesim: asyncio.subprocess.Process
    syncer: asyncio.subprocess.Process | None = None
    syncer_args: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    agent: asyncio.subprocess.Process | None = None
    pg_down: list[tuple[float, float]] = field(default_factory=list)
    syncer_down: list[tuple[float, float]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    syncer_peak_mb: float = 0.0  # of syncers killed so far (VmHWM dies with the process)

    @property
    def data_dir(self) -> Path:
        return self.work / "data"

    @property
    def admin(self) -> tuple[str, str]:
        return (f"http://127.0.0.1:{self.ports['admin']}",
                (self.data_dir / "admin.token").read_text().strip())

    @property
    def access(self) -> ApiAccess:
        return ApiAccess.of_server(self.data_dir, self.ports["api"])

    def pids(self) -> dict[str, list[int]]:
        """The processes measured, by the name the figures give them."""
        out = {"kubesim": [self.kubesim.pid], "postgres": [postmaster_pid(self.pg.pgdata)]}
        if self.syncer is not None and self.syncer.returncode is None:
            out["syncer"] = [self.syncer.pid, *_children(self.syncer.pid)]
        if self.agent is not None and self.agent.returncode is None:
            out["agent"] = [self.agent.pid]
        return out


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.name.isdigit():
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def rss_of(pids: list[int], *, with_children: bool = False) -> float:
    """Resident MiB of the processes (and their children); memory they share (PostgreSQL's
    shared buffers, which every server process maps) is counted once."""
    private, shared = 0, 0
    for pid in pids:
        for one in [pid, *(_children(pid) if with_children else [])]:
            with contextlib.suppress(OSError, ValueError):
                kib = _status_kib(one)
                private += kib.get("RssAnon", 0) + kib.get("RssFile", 0)
                shared = max(shared, kib.get("RssShmem", 0))
    return (private + shared) / 1024


def _status_kib(pid: int) -> dict[str, int]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in lines) if v.endswith(" kB")}


# -- starting it ---------------------------------------------------------------------------------

async def start_pg(work: Path) -> embedded.EmbeddedPostgres:
    pg = embedded.EmbeddedPostgres(data_dir=work / "pg")
    await asyncio.to_thread(embedded.start, pg)
    return pg


async def start_kubesim(procs: Procs, work: Path, *, clusters: int, objects: int, seed: int
                        ) -> tuple[asyncio.subprocess.Process, list[Member]]:
    listing = work / "clusters.json"
    # History: five minutes (kubesim's default) at 100 writes/s per cluster is 30,000
    # events, under the default cap; an informer resuming after a fault needs seconds.
    proc = await procs.start(
        "kubesim", "-m", "kubesim", "serve", "--clusters", str(clusters), "--name", "soak",
        "--objects-per-cluster", str(objects), "--seed", str(seed), "--listing-out", str(listing),
        "--kubeconfig-dir", str(work / "kubeconfigs"), "--bookmark-interval", "5")
    deadline = time.monotonic() + KUBESIM_START_S
    while not listing.exists():
        if proc.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"kubesim did not start:\n{procs.tail('kubesim')}")
        await asyncio.sleep(0.2)
    members = [Member(name=c["name"], url=c["url"], kubeconfig=Path(c["kubeconfig"]))
               for c in orjson.loads(listing.read_bytes())["clusters"]]
    return proc, members


async def start_syncer(system: System) -> None:
    """Start ``kubepedia serve`` (again); the first start learns its ports, later ones reuse them."""
    if not system.syncer_args:
        system.syncer_args = ["-m", "kubepedia", "--log-level", "info", "serve", "--database-url",
                              system.pg.url, "--data-dir", str(system.data_dir)]
        listen = {"api": "127.0.0.1:0", "ingest": "127.0.0.1:0", "admin": "127.0.0.1:0"}
    else:
        listen = {name: f"127.0.0.1:{port}" for name, port in system.ports.items()}
    args = system.syncer_args + [a for name, where in listen.items() for a in (f"--{name}-listen", where)]
    system.syncer = await system.procs.start("syncer", *args)
    if not system.ports:
        system.ports = await listening_ports(system.procs, "syncer", system.syncer,
                                             {"api", "ingest", "admin"}, limit_s=READY_S)
    await wait_ready(system)


async def wait_ready(system: System) -> None:
    deadline = time.monotonic() + READY_S
    async with system.access.session() as api, aiohttp.ClientSession() as ingest:
        for session, url in ((ingest, f"http://127.0.0.1:{system.ports['ingest']}/readyz"), (api, "/readyz")):
            while True:
                assert system.syncer is not None
                if system.syncer.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"kubepedia serve is not ready:\n{system.procs.tail('syncer')}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.2)


async def register(system: System, member: Member, *, pull: bool) -> str | None:
    url, token = system.admin
    body: dict[str, Any] = {"name": member.name, "mode": "pull" if pull else "push", "settings": {}}
    if pull:
        body["kubeconfig"] = member.kubeconfig.read_text()
    async with aiohttp.ClientSession() as session, session.post(
            url + "/admin/v1/clusters", data=orjson.dumps(body), headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        answer = orjson.loads(await resp.read())
        if resp.status >= 300:
            raise RuntimeError(f"registering {member.name}: HTTP {resp.status} {answer}")
    return None if pull else str(answer["token"])


async def start_agent(system: System, member: Member, token: str) -> None:
    system.agent = await system.procs.start(
        "agent", "-m", "kubepedia", "agent", "--cluster", member.name, "--syncer",
        f"http://127.0.0.1:{system.ports['ingest']}", "--kubeconfig", str(member.kubeconfig),
        "--log-level", "WARNING", env={"KUBEPEDIA_AGENT_TOKEN": token})


async def control(member: Member, action: str, *, method: str = "POST", **params: str) -> dict[str, Any]:
    """A kubesim control call (``kubesim.control``); fails unless kubesim did it."""
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{member.url}/_kubesim/{action}", params=params) as resp:
        body: dict[str, Any] = orjson.loads(await resp.read())
        if resp.status != 200:
            raise RuntimeError(f"{member.name} {action}: HTTP {resp.status} {body}")
        return body


# -- the faults ----------------------------------------------------------------------------------

async def drop_watches(system: System, _turn: int) -> str:
    dropped = [(await control(m, "drop-watches"))["dropped"] for m in system.members]
    return f"dropped {sum(dropped)} watches of {len(dropped)} clusters"


async def compact(system: System, turn: int) -> str:
    member = system.members[turn % len(system.members)]
    done = await control(member, "compact")
    dropped = (await control(member, "drop-watches"))["dropped"]
    return f"compacted {member.name} at {done['compactedResourceVersion']}, dropped {dropped} watches"


async def kill_syncer(system: System, _turn: int) -> str:
    assert system.syncer is not None
    with contextlib.suppress(OSError, RuntimeError):
        system.syncer_peak_mb = max(system.syncer_peak_mb, _peak(system.syncer.pid))
    down = time.monotonic()
    os.killpg(system.syncer.pid, signal.SIGKILL)
    await system.syncer.wait()
    await system.procs.stop(system.syncer)
    await start_syncer(system)
    system.syncer_down.append((down, time.monotonic()))
    return f"killed the syncer (-9), up again after {time.monotonic() - down:.1f}s"


def _peak(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def restart_pg(system: System, _turn: int) -> str:
    before = postmaster_pid(system.pg.pgdata)
    down = time.monotonic()
    await asyncio.to_thread(embedded.stop, system.pg)
    await asyncio.sleep(PG_DOWN_S)
    await asyncio.to_thread(embedded.start, system.pg)
    system.pg_down.append((down, time.monotonic()))
    after = postmaster_pid(system.pg.pgdata)
    if after == before:
        raise RuntimeError("PostgreSQL was not restarted")
    return f"restarted PostgreSQL (down {time.monotonic() - down:.1f}s)"


async def stall(system: System, turn: int) -> str:
    member = system.members[(turn + 2) % len(system.members)]
    await control(member, "stall", seconds=str(STALL_S))
    return f"stalled {member.name} for {STALL_S:.0f}s"


Fault = Callable[[System, int], Awaitable[str]]
FAULTS: list[tuple[str, Fault]] = [("drop-watches", drop_watches), ("compact", compact),
                                   ("kill-syncer", kill_syncer), ("restart-postgres", restart_pg),
                                   ("stall", stall)]


async def fault_loop(system: System, *, start: float, every: float, until: float) -> None:
    """One fault every ``every`` seconds from ``start`` (monotonic) while before ``until``."""
    n = 0
    while (at := start + n * every) < until:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        name, fault = FAULTS[n % len(FAULTS)]
        began = time.monotonic()
        what = await fault(system, n // len(FAULTS))
        system.faults.append({"fault": name, "at_s": round(began - start, 1),
                              "took_s": round(time.monotonic() - began, 1), "what": what})
        log(f"fault {n + 1} at +{began - start:.0f}s: {what}")
        n += 1
