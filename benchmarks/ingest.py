"""Ingest core throughput against the physical limit: a raw COPY into a bare table.

    python -m benchmarks.ingest [--objects N]

Measures, on a fresh embedded PostgreSQL: (a) a snapshot of N realistic Pods through the
ingest core (pages of 500, as many in flight as the agent sends: two), (b) N watch events
(MODIFIED, batches of 500, one at a time since their order matters) through the ingest
core, (c) the rows (b) left in ``resources``, read back as a binary COPY stream before the
clock starts, in one raw COPY into a bare table with the same columns, with the server's
default TOAST compression and uncompressed as the store keeps objects (``benchmarks._copy``;
medians of 3). The ratios are against the uncompressed COPY (``*_vs_copy``) and the default
one (``*_vs_copy_default``). Objects are cloned from a pool of realistic pods and streamed,
so client memory stays flat as N grows; their generation (about 17 us each) is on the clock
of (a) and (b), which makes their ratios lower, not higher. The last line is one JSON object
with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from agent.pipeline import PipelineSettings
from benchmarks._copy import copy_rates
from benchmarks._procs import reachable_tempdir
from kube.resources import ResourceType
from kubesim.objects import make_pod
from syncer import embedded
from syncer.db import connect, create_pool
from syncer.ingest import PageResult, Store
from syncer.migrations import migrate

PODS = ResourceType(group="", version="v1", resource="pods", kind="Pod", namespaced=True)
PAGE = 500
PAGES_IN_FLIGHT = PipelineSettings().pages_in_flight
TEMPLATES = 1000
CLUSTER = "bench"
STAMP = "2026-01-01T00:00:00Z"


def _templates(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [make_pod(rng, f"ns-{i % 20}", f"tpl-{i}") for i in range(TEMPLATES)]


def pods(n: int, *, generation: int, templates: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """N distinct pods; ``generation`` changes every object's resourceVersion and status."""
    for i in range(n):
        tpl = templates[i % TEMPLATES]
        meta = {**tpl["metadata"], "name": f"pod-{i}", "namespace": f"ns-{i % 20}",
                "uid": str(uuid.UUID(int=i + 1)), "resourceVersion": str(generation * n + i + 1),
                "creationTimestamp": STAMP}
        status = {**tpl["status"], "observedGeneration": generation}
        yield {**tpl, "metadata": meta, "status": status}


def pages(items: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    page: list[dict[str, Any]] = []
    for item in items:
        page.append(item)
        if len(page) == PAGE:
            yield page
            page = []
    if page:
        yield page


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


async def send_snapshot(store: Store, pages: Iterable[list[dict[str, Any]]], *, n: int, cluster: str) -> None:
    """A snapshot of ``n`` objects, its pages sent as the agent sends them: up to
    PAGES_IN_FLIGHT before one is acknowledged."""
    snapshot_id = await store.snapshot_start(cluster=cluster, rtype=PODS)
    in_flight: list[asyncio.Task[PageResult]] = []
    for page in pages:
        if len(in_flight) >= PAGES_IN_FLIGHT:
            await in_flight.pop(0)
        in_flight.append(asyncio.create_task(store.snapshot_page(
            cluster=cluster, rtype=PODS, snapshot_id=snapshot_id, items=page)))
    await asyncio.gather(*in_flight)
    await store.snapshot_end(cluster=cluster, rtype=PODS, snapshot_id=snapshot_id,
                             resource_version=str(n), count=n)


async def bench_snapshot(store: Store, n: int, templates: list[dict[str, Any]], *,
                         cluster: str = CLUSTER) -> float:
    start = time.perf_counter()
    await send_snapshot(store, pages(pods(n, generation=0, templates=templates)), n=n, cluster=cluster)
    return time.perf_counter() - start


async def bench_watch(store: Store, n: int, templates: list[dict[str, Any]]) -> float:
    start = time.perf_counter()
    for page in pages(pods(n, generation=1, templates=templates)):
        await store.apply_batch(cluster=CLUSTER, rtype=PODS,
                                events=[{"type": "MODIFIED", "object": obj} for obj in page])
    return time.perf_counter() - start


async def run(n: int, seed: int) -> dict[str, Any]:
    templates = _templates(seed)
    with reachable_tempdir("kubepedia-bench-") as tmp:
        async with embedded.running(Path(tmp)) as pg:
            conn = await connect(pg.url)
            await migrate(conn)
            await conn.close()
            pool = await create_pool(pg.url, min_size=1, max_size=PAGES_IN_FLIGHT + 1)
            try:
                store = Store(pool)
                # Memory must not grow with N: the peak after a tenth of the objects is the yardstick.
                await bench_snapshot(store, max(n // 10, 1), templates, cluster="warm-up")
                rss_tenth = peak_rss_mb()
                await store.remove_cluster(cluster="warm-up")
                snapshot_s = await bench_snapshot(store, n, templates)
                watch_s = await bench_watch(store, n, templates)
                async with pool.acquire() as conn:
                    copy = await copy_rates(conn, where="cluster = $1", args=(CLUSTER,),
                                            spool=Path(tmp) / "copy-baseline.bin")
            finally:
                await pool.close()
    assert copy.rows == n, f"expected {n} rows, found {copy.rows}"
    snapshot_rate, watch_rate = n / snapshot_s, n / watch_s
    return {
        "objects": n,
        "snapshot_objects_per_s": round(snapshot_rate),
        "watch_objects_per_s": round(watch_rate),
        "copy_objects_per_s": round(copy.uncompressed),
        "copy_objects_per_s_default": round(copy.default),
        "snapshot_vs_copy": round(snapshot_rate / copy.uncompressed, 3),
        "watch_vs_copy": round(watch_rate / copy.uncompressed, 3),
        "snapshot_vs_copy_default": round(snapshot_rate / copy.default, 3),
        "watch_vs_copy_default": round(watch_rate / copy.default, 3),
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_mb_at_tenth": rss_tenth,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = asyncio.run(run(args.objects, args.seed))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
