"""Where PostgreSQL's CPU goes per object: the ingest core with one part of the schema removed.

    python -m benchmarks.store_costs [--objects N] [--batch B] [--only NAME,...]

On a fresh embedded PostgreSQL, the schema is migrated once into a template database; each
variant gets its own copy of it, changed by a few statements (an index dropped, a trigger
disabled, a storage setting), and then takes (a) an initial sync of N pods through the ingest
core (snapshot pages of 500, two in flight, as the agent sends them) and (b) N status updates
(MODIFIED events, batches of B, one at a time). Payloads are built before the clock starts.
What is measured is the CPU time of every PostgreSQL process (backends, autovacuum, WAL and
checkpoint writers) per object, and the WAL bytes per object; a component's cost is the
baseline's figure minus the variant's. Only this benchmark uses its server. The baseline is
the schema as migrated; variants named "(before N)" put back what migration N changed.

One index costs a few tens of microseconds an object, about the noise of one run on a
shared machine (+-50 us): compare medians of several runs (``--repeat``).

Progress and a table go to stderr; the last stdout line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from benchmarks._procs import cpu_seconds, log, postmaster_pid, reachable_tempdir
from benchmarks.ingest import PAGE, PAGES_IN_FLIGHT, PODS, STAMP, TEMPLATES, _templates, send_snapshot
from syncer import embedded
from syncer.db import connect, create_pool
from syncer.ingest import Store
from syncer.migrations import migrate

CLUSTER = "costs"
TEMPLATE_DB = "costs_template"

_GIN = ("resources_labels", "resources_name_trgm", "resources_pod_images", "resource_keys_name_trgm",
        "resource_keys_container_images")

# name -> statements that remove (or change) one part of the schema
VARIANTS: dict[str, tuple[str, ...]] = {
    "baseline": (),
    **{f"-index {name}": (f"DROP INDEX {name}",) for name in (
        "resources_list_order", "resources_field_node_name", "resources_field_phase", "resources_label_app",
        "resources_label_app_name", "resources_uid", "resources_owner_uid", "resources_created_at",
        "resources_order_created", "resources_labels", "resources_name_trgm", "resources_pod_report",
        "resources_pod_images", "resources_event_time", "resources_pod_images_unbounded",
        "resource_keys_name_trgm", "resource_keys_container_images",
        "change_log_seq", "change_log_at", "change_log_type_seq", "change_log_list_order",
        "change_log_namespace")},
    "-trigger resource_keys": tuple(f"ALTER TABLE resources DISABLE TRIGGER {t}" for t in (
        "resources_keys_added", "resources_keys_removed", "resources_keys_changed")),
    "-trigger object_counts": tuple(f"ALTER TABLE resources DISABLE TRIGGER {t}" for t in (
        "resources_counts_added", "resources_counts_removed")),
    "-trigger pod_image_use": tuple(f"ALTER TABLE resources DISABLE TRIGGER {t}" for t in (
        "pod_image_use_insert", "pod_image_use_update", "pod_image_use_delete")),
    "gin fastupdate off": tuple(f"ALTER INDEX {name} SET (fastupdate = off)" for name in _GIN),
    # Migration 15 stores them so on a server without lz4: this is what it was before.
    "change_log object pglz (before 15)": (
        "ALTER TABLE change_log RESET (toast_tuple_target)",
        "ALTER TABLE change_log ALTER COLUMN object SET STORAGE EXTENDED"),
    "-statistics resources_type": ("DROP STATISTICS resources_type",),
    "wal_compression off": (
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET wal_compression = off', current_database());"
        " END $$",),
    "pod_image_use update per statement (before 14)": (
        "DROP TRIGGER pod_image_use_update ON resources",
        "CREATE TRIGGER pod_image_use_update AFTER UPDATE ON resources REFERENCING OLD TABLE AS old_rows"
        " NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pod_image_use_track()"),
}


def pods(n: int, *, generation: int, templates: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """N pods; each generation changes every pod's resourceVersion and status.podIP, as a
    status update does."""
    rng = random.Random(generation)
    for i in range(n):
        tpl = templates[i % TEMPLATES]
        meta = {**tpl["metadata"], "name": f"pod-{i}", "namespace": f"ns-{i % 20}",
                "uid": f"00000000-0000-0000-0000-{i + 1:012d}",
                "resourceVersion": str(generation * n + i + 1),
                "creationTimestamp": STAMP}
        status = {**tpl["status"], "podIP": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{i % 250 + 1}"}
        yield {**tpl, "metadata": meta, "status": status}


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class Meter:
    """PostgreSQL's CPU seconds and WAL bytes between two points."""

    def __init__(self, pid: int, conn: asyncpg.Connection) -> None:
        self.pid, self.conn = pid, conn

    async def read(self) -> tuple[float, int]:
        wal = int(await self.conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
        return cpu_seconds(self.pid, children=True), wal


async def _churn(store: Store, batches: list[list[dict[str, Any]]]) -> None:
    for batch in batches:
        await store.apply_batch(cluster=CLUSTER, rtype=PODS,
                                events=[{"type": "MODIFIED", "object": obj} for obj in batch])


async def variant(url: str, pid: int, name: str, statements: tuple[str, ...], *, number: int, n: int,
                  batch: int, templates: list[dict[str, Any]], quiet_s: float) -> dict[str, float]:
    admin = await connect(url)
    db = f"costs_{number}"
    await admin.execute(f"CREATE DATABASE {db} TEMPLATE {TEMPLATE_DB}")
    db_url = url.rsplit("/", 1)[0] + "/" + db
    conn = await connect(db_url)
    for statement in statements:
        await conn.execute(statement)
    pool = await create_pool(db_url, min_size=1, max_size=PAGES_IN_FLIGHT + 1)
    meter = Meter(pid, conn)
    try:
        store = Store(pool)
        snapshot_pages = chunks(list(pods(n, generation=0, templates=templates)), PAGE)
        updates = chunks(list(pods(n, generation=1, templates=templates)), batch)
        await asyncio.sleep(quiet_s)
        cpu0, wal0 = await meter.read()
        started = time.perf_counter()
        await send_snapshot(store, snapshot_pages, n=n, cluster=CLUSTER)
        sync_s = time.perf_counter() - started
        await asyncio.sleep(quiet_s)  # autovacuum and the writers' work that follows counts
        cpu1, wal1 = await meter.read()
        started = time.perf_counter()
        await _churn(store, updates)
        churn_s = time.perf_counter() - started
        await asyncio.sleep(quiet_s)
        cpu2, wal2 = await meter.read()
        hot = await conn.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'resources'")
        sizes = await conn.fetchrow(
            "SELECT pg_total_relation_size('resources') AS resources,"
            " pg_total_relation_size('change_log') AS change_log")
    finally:
        await pool.close()
        await conn.close()
        with contextlib.suppress(asyncpg.PostgresError):
            await admin.execute(f"DROP DATABASE {db} WITH (FORCE)")
        await admin.close()
    figures = {
        "sync_cpu_us": (cpu1 - cpu0) * 1e6 / n, "sync_wal_b": (wal1 - wal0) / n,
        "sync_per_s": n / sync_s,
        "churn_cpu_us": (cpu2 - cpu1) * 1e6 / n, "churn_wal_b": (wal2 - wal1) / n,
        "churn_per_s": n / churn_s,
        "hot_updates": (hot["n_tup_hot_upd"] / hot["n_tup_upd"]) if hot and hot["n_tup_upd"] else 0.0,
        "resources_mb": sizes["resources"] / 2**20 if sizes else 0.0,
        "change_log_mb": sizes["change_log"] / 2**20 if sizes else 0.0,
    }
    log(f"{name:40s} sync {figures['sync_cpu_us']:6.0f} us/obj {figures['sync_wal_b']:6.0f} WAL B/obj"
        f" {figures['sync_per_s']:6.0f}/s | churn {figures['churn_cpu_us']:6.0f} us/obj"
        f" {figures['churn_wal_b']:6.0f} WAL B/obj {figures['churn_per_s']:6.0f}/s"
        f" | HOT {figures['hot_updates']:.2f}"
        f" | {figures['resources_mb']:.0f}+{figures['change_log_mb']:.0f} MB")
    return figures


async def run(n: int, batch: int, only: list[str], repeat: int, quiet_s: float) -> dict[str, Any]:
    templates = _templates(1)
    names = [v for v in VARIANTS if not only or v in only or v == "baseline"]
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    with reachable_tempdir("kubepedia-bench-costs-") as tmp:
        async with embedded.running(Path(tmp)) as pg:
            admin = await connect(pg.url)
            await admin.execute(f"CREATE DATABASE {TEMPLATE_DB}")
            template_url = pg.url.rsplit("/", 1)[0] + "/" + TEMPLATE_DB
            conn = await connect(template_url)
            await migrate(conn)
            await conn.close()
            await admin.close()
            pid = postmaster_pid(pg.pgdata)
            for number in range(repeat * len(names)):
                name = names[number % len(names)]
                results[name].append(await variant(pg.url, pid, name, VARIANTS[name], number=number, n=n,
                                                   batch=batch, templates=templates, quiet_s=quiet_s))
    medians = {name: {k: round(sorted(r[k] for r in runs)[len(runs) // 2], 2) for k in runs[0]}
               for name, runs in results.items()}
    return {"objects": n, "batch": batch, "repeat": repeat, "variants": medians}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=250, help="events per watch batch")
    parser.add_argument("--only", default="", help="comma-separated variant names (baseline always runs)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant; medians are reported")
    parser.add_argument("--quiet", type=float, default=2.0, help="seconds to wait around each phase")
    args = parser.parse_args()
    only = [v for v in args.only.split(",") if v]
    result = asyncio.run(run(args.objects, args.batch, only, args.repeat, args.quiet))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
