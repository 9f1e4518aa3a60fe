"""Ingest core throughput against the physical limit: a raw COPY into a bare table.

    python -m benchmarks.ingest [--objects N]

Measures, on a fresh embedded PostgreSQL: (a) a snapshot of N realistic Pods through the
ingest core (pages of 500, as many in flight as the agent sends: two), (b) N watch events
(MODIFIED, batches of 500, one at a time since their order matters) through the ingest
core, (c) the same rows in one raw asyncpg COPY into a bare table with the same columns.
Objects are cloned from a pool of realistic pods and streamed, so client memory stays flat
as N grows. The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from agent.pipeline import PipelineSettings
from benchmarks._procs import reachable_tempdir
from kube.resources import ResourceType
from kubesim.objects import make_pod
from syncer import embedded
from syncer.db import connect, create_pool
from syncer.ingest import Store
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


async def bench_snapshot(store: Store, n: int, templates: list[dict[str, Any]], *,
                         cluster: str = CLUSTER) -> float:
    """Pages go in as the agent sends them: up to PAGES_IN_FLIGHT before one is acknowledged."""
    start = time.perf_counter()
    snapshot_id = await store.snapshot_start(cluster=cluster, rtype=PODS)
    in_flight: list[asyncio.Task[int]] = []
    for page in pages(pods(n, generation=0, templates=templates)):
        if len(in_flight) >= PAGES_IN_FLIGHT:
            await in_flight.pop(0)
        in_flight.append(asyncio.create_task(store.snapshot_page(
            cluster=cluster, rtype=PODS, snapshot_id=snapshot_id, items=page)))
    await asyncio.gather(*in_flight)
    await store.snapshot_end(cluster=cluster, rtype=PODS, snapshot_id=snapshot_id,
                             resource_version=str(n), count=n)
    return time.perf_counter() - start


async def bench_watch(store: Store, n: int, templates: list[dict[str, Any]]) -> float:
    start = time.perf_counter()
    for page in pages(pods(n, generation=1, templates=templates)):
        await store.apply_batch(cluster=CLUSTER, rtype=PODS,
                                events=[{"type": "MODIFIED", "object": obj} for obj in page])
    return time.perf_counter() - start


def _copy_records(n: int, templates: list[dict[str, Any]]) -> Iterator[tuple[Any, ...]]:
    from datetime import datetime

    created = datetime.fromisoformat(STAMP)
    for seq, obj in enumerate(pods(n, generation=0, templates=templates), start=1):
        meta = obj["metadata"]
        yield (CLUSTER, "", "v1", "pods", "Pod", meta["namespace"], meta["name"], meta["uid"],
               meta["resourceVersion"], None, meta["labels"], created, None, seq, orjson.dumps(obj))


async def bench_copy(pool: asyncpg.Pool, n: int, templates: list[dict[str, Any]]) -> float:
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE bare (LIKE resources)")
        columns = [r["column_name"] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'resources'"
            " AND is_generated = 'NEVER' ORDER BY ordinal_position")]  # the rows as ingest sends them
        start = time.perf_counter()
        await conn.copy_records_to_table("bare", columns=columns, records=_copy_records(n, templates))
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
                copy_s = await bench_copy(pool, n, templates)
                stored = await pool.fetchval("SELECT count(*) FROM resources")
            finally:
                await pool.close()
    assert stored == n, f"expected {n} rows, found {stored}"
    snapshot_rate, watch_rate, copy_rate = n / snapshot_s, n / watch_s, n / copy_s
    return {
        "objects": n,
        "snapshot_objects_per_s": round(snapshot_rate),
        "watch_objects_per_s": round(watch_rate),
        "copy_objects_per_s": round(copy_rate),
        "snapshot_vs_copy": round(snapshot_rate / copy_rate, 3),
        "watch_vs_copy": round(watch_rate / copy_rate, 3),
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
