"""Subprocesses for the end-to-end benchmarks: start, wait until ready, always stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

# ``kubepedia serve`` logs each listener's bound address; started with port 0, that line is
# where the port it got is learned (a port picked "free" beforehand may be taken by then).
LISTENING = re.compile(r" listening listener=(\S+) address=(\S+)")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()  # fields from the state on (field 3)


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU time of a process (and of its live children), in seconds."""
    pids = [pid]
    if children:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError):
                    if int(_stat(int(entry.name))[1]) == pid:
                        pids.append(int(entry.name))
    ticks = 0
    for one in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = _stat(one)
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def reachable_tempdir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary directory for an embedded PostgreSQL: opened for passing through (0711),
    since under root the server runs as a service user and kubepedia changes no mode of a
    directory it did not make."""
    tmp = tempfile.TemporaryDirectory(prefix=prefix)
    Path(tmp.name).chmod(0o711)
    return tmp


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


class Procs:
    """Processes started for one run; ``async with`` stops every one still running on exit
    (SIGTERM, then SIGKILL after a grace period), also on errors and cancellation."""

    def __init__(self, log_dir: Path, grace: float = 15.0) -> None:
        self.log_dir = log_dir
        self.grace = grace
        self._procs: list[tuple[str, asyncio.subprocess.Process, IO[bytes]]] = []

    async def __aenter__(self) -> Procs:
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Shielded: a Ctrl-C that cancels the run must still wait for the children to stop.
        await asyncio.shield(self.stop_all())

    async def start(self, name: str, *args: str, env: dict[str, str] | None = None,
                    stdout_pipe: bool = False) -> asyncio.subprocess.Process:
        """Start ``python args...``; stderr (and stdout unless piped) go to ``<name>.log``."""
        logfile = (self.log_dir / f"{name}.log").open("ab")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args,
            stdout=asyncio.subprocess.PIPE if stdout_pipe else logfile, stderr=logfile,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )
        self._procs.append((name, proc, logfile))
        return proc

    def tail(self, name: str, lines: int = 20) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self, proc: asyncio.subprocess.Process) -> int | None:
        for entry in list(self._procs):
            if entry[1] is proc:
                self._procs.remove(entry)
                await self._stop(*entry)
        return proc.returncode

    async def stop_all(self) -> None:
        while self._procs:  # newest first: agents before the servers they talk to
            await self._stop(*self._procs.pop())

    async def _stop(self, name: str, proc: asyncio.subprocess.Process, logfile: IO[bytes]) -> None:
        try:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), self.grace)
                except TimeoutError:
                    log(f"{name} did not stop in {self.grace:.0f}s; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    await proc.wait()
        finally:
            logfile.close()


async def listening_ports(procs: Procs, name: str, proc: asyncio.subprocess.Process,
                          listeners: set[str], limit_s: float) -> dict[str, int]:
    """The ports a ``kubepedia serve`` started as ``name`` reports in its log (port 0)."""
    deadline = time.monotonic() + limit_s
    path = procs.log_dir / f"{name}.log"
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        ports = {m[1]: int(m[2].rsplit(":", 1)[1]) for m in LISTENING.finditer(text)}
        if ports.keys() >= listeners:
            return ports
        if proc.returncode is not None:
            raise RuntimeError(f"{name} exited before reporting its ports:\n{procs.tail(name)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not report its ports in {limit_s:.0f}s:\n{procs.tail(name)}")
        await asyncio.sleep(0.1)


async def read_until(proc: asyncio.subprocess.Process, marker: str, limit_s: float) -> str:
    """Read the process's stdout until a line contains ``marker``; returns what follows it."""
    assert proc.stdout is not None

    async def scan() -> str:
        assert proc.stdout is not None
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError(f"process {proc.pid} exited before printing {marker!r}")
            if marker in line:
                return line.split(marker, 1)[1].strip()

    return await asyncio.wait_for(scan(), limit_s)


async def drain(proc: asyncio.subprocess.Process) -> None:
    """Keep reading a piped stdout so the child never blocks on a full pipe."""
    assert proc.stdout is not None
    while await proc.stdout.read(65536):
        pass
