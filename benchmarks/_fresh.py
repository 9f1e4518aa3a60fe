"""Freshness: how long a write acknowledged by a member cluster takes to reach ``change_log``.

Shared by the end-to-end benchmarks (``benchmarks.sync``: one cluster; ``benchmarks.scale``:
many). The writes are pod status updates, made one of two ways:

* ``churn_load``: each kubesim cluster writes its own pods in-process (``/_kubesim/churn``
  with ``statusOnly`` and ``record``), as kubelets do in a real cluster, and records when
  it acknowledged each write and the resourceVersion it made. No client process takes
  the CPU of the machine being measured; in production the member clusters' API servers
  do not run on kubepedia's machine either.
* ``writer``: a client process PATCHes over HTTP and records the same; on a small machine
  its CPU and kubesim's HTTP handling take a large share of what the pipeline needs.

A poller reads ``change_log`` every few milliseconds and notes when each resourceVersion
first becomes visible. Latency = visible - acknowledged (one machine, one monotonic clock
across processes).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

POLL_S = 0.005  # poller interval
WRITER_CONCURRENCY = 48
MERGE = {"Content-Type": "application/merge-patch+json"}
PODS_PER_TARGET = 2000  # pods a writer picks from, per cluster

# One acknowledged write: monotonic time, resourceVersion, namespace, name, index of the
# cluster in the writer's list of URLs.
Ack = tuple[float, str, str, str, int]


async def _pods(session: aiohttp.ClientSession, url: str, limit: int) -> list[tuple[str, str]]:
    async with session.get(url + "/api/v1/pods", params={"limit": str(limit)}) as resp:
        return [(p["metadata"]["namespace"], p["metadata"]["name"])
                for p in orjson.loads(await resp.read())["items"]]


async def writer(urls: Sequence[str], rate: float, duration: float, seed: int, out: str) -> None:
    """PATCH pod status at ``rate``/s in all, over the clusters at ``urls`` in turn, for
    ``duration`` s; writes to ``out`` the acknowledged writes (``Ack``), the errors and the
    elapsed time. Run as a process of its own, so that its CPU does not delay the poller."""
    rng = random.Random(seed)
    connector = aiohttp.TCPConnector(limit=WRITER_CONCURRENCY)
    acks: list[Ack] = []
    errors = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        per_target = max(20, PODS_PER_TARGET // len(urls))
        pods = [await _pods(session, url, per_target) for url in urls]
        limiter = asyncio.Semaphore(WRITER_CONCURRENCY)

        async def one(n: int) -> None:
            nonlocal errors
            target = n % len(urls)
            namespace, name = rng.choice(pods[target])
            body = orjson.dumps({"status": {
                "phase": "Running",
                "podIP": f"10.{n % 250}.{rng.randrange(256)}.{rng.randrange(1, 255)}"}})
            path = f"{urls[target]}/api/v1/namespaces/{namespace}/pods/{name}/status"
            try:
                async with session.patch(path, data=body, headers=MERGE) as resp:
                    raw = await resp.read()
                    if resp.status >= 300:
                        errors += 1
                        return
                    rv = orjson.loads(raw)["metadata"]["resourceVersion"]
                    acks.append((time.monotonic(), rv, namespace, name, target))
            except aiohttp.ClientError:
                errors += 1
            finally:
                limiter.release()

        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        issued = 0
        while (elapsed := time.monotonic() - start) < duration:
            ahead = issued / rate - elapsed
            if ahead > 0:
                await asyncio.sleep(ahead)
            await limiter.acquire()
            task = asyncio.create_task(one(issued))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            issued += 1
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
    data = orjson.dumps({"acks": acks, "errors": errors, "elapsed": elapsed,
                         "cpu_s": time.process_time()})
    await asyncio.to_thread(Path(out).write_bytes, data)


async def churn_load(urls: Sequence[str], rate: float, duration: float) -> tuple[list[Ack], int]:
    """Status updates made by the clusters at ``urls`` themselves, ``rate``/s in all for
    ``duration`` s; returns the acknowledged writes (``Ack``, by index in ``urls``) and the
    failed ones."""
    each = rate / len(urls)
    async with aiohttp.ClientSession() as session:
        async def call(method: str, url: str, **params: str) -> dict[str, Any]:
            async with session.request(method, url, params=params) as resp:
                body = await resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"{method} {url}: HTTP {resp.status} {body[:200]!r}")
                parsed: dict[str, Any] = orjson.loads(body)
                return parsed

        await asyncio.gather(*(call("POST", url + "/_kubesim/churn", rate=str(each), seconds=str(duration),
                                    statusOnly="true", record="true") for url in urls))
        await asyncio.sleep(duration)
        for url in urls:  # a churn ends on its own clock, a moment after ours
            while (await call("GET", url + "/_kubesim/churn"))["running"]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        taken = await asyncio.gather(*(call("POST", url + "/_kubesim/churn/acks") for url in urls))
        states = await asyncio.gather(*(call("GET", url + "/_kubesim/churn") for url in urls))
    dropped = sum(int(t["dropped"]) for t in taken)
    if dropped:
        raise RuntimeError(f"kubesim kept no record of {dropped} writes: run shorter or slower")
    acks = [(float(t), str(rv), namespace, name, target)
            for target, took in enumerate(taken) for t, rv, namespace, name in took["acks"]]
    return acks, sum(int(state["errors"]) for state in states)


class ChangePoller:
    """Notes, by its own clock, when each change of the clusters' pods appears in change_log
    at or below the horizon: where watches see it (``apiserver.horizon``; the horizon is read
    in a statement before the one that reads the log).

    A write counts as visible once its own or a later resourceVersion of the same object is
    (a store may fold consecutive changes of one object into one). resourceVersions are
    compared as numbers: within one kubesim cluster they come from one counter.
    """

    def __init__(self, db_url: str, clusters: Sequence[str]) -> None:
        self.db_url, self.clusters = db_url, list(clusters)
        self.seen: dict[tuple[str, str, str], tuple[list[int], list[float]]] = {}
        self.rows = 0  # pod changes seen since the poller started
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ChangePoller:
        self._conn = await asyncpg.connect(self.db_url)
        self._last = int(await self._conn.fetchval("SELECT change_log_horizon()"))
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._conn.close()

    def visible(self, cluster: str, namespace: str, name: str, rv: str) -> float | None:
        """When the write of ``rv`` (or a later one) to the object was first seen."""
        rvs, times = self.seen.get((cluster, namespace, name), ([], []))
        at = bisect.bisect_left(rvs, int(rv))
        return times[at] if at < len(rvs) else None

    async def _poll(self) -> None:
        horizon = await self._conn.prepare("SELECT change_log_horizon()")
        stmt = await self._conn.prepare(
            "SELECT seq, cluster, namespace, name, resource_version FROM change_log"
            " WHERE cluster = ANY($1::text[]) AND seq > $2 AND seq <= $3 AND resource = 'pods' ORDER BY seq")
        while True:
            upto = int(await horizon.fetchval())
            rows = await stmt.fetch(self.clusters, self._last, upto)
            now = time.monotonic()
            for _seq, cluster, namespace, name, rv in rows:
                rvs, times = self.seen.setdefault((cluster, namespace, name), ([], []))
                if not rvs or int(rv) > rvs[-1]:
                    rvs.append(int(rv))
                    times.append(now)
            self._last = max(self._last, upto)
            self.rows += len(rows)
            await asyncio.sleep(POLL_S)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def wait_visible(poller: ChangePoller, acks: Sequence[Ack], clusters: Sequence[str],
                       *, limit_s: float = 30.0) -> list[float]:
    """Wait up to ``limit_s`` for every acknowledged write to be seen; returns the latencies
    (ms) of those seen. ``clusters`` names the writer's URLs, by index."""
    pending = list(acks)
    for _ in range(int(limit_s * 10)):
        pending = [a for a in pending if poller.visible(clusters[a[4]], a[2], a[3], a[1]) is None]
        if not pending:
            break
        await asyncio.sleep(0.1)
    return [(seen - t) * 1000 for t, rv, namespace, name, target in acks
            if (seen := poller.visible(clusters[target], namespace, name, rv)) is not None]
