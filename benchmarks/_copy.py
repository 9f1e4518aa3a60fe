"""The physical limit the ingest benchmarks compare with: a raw binary COPY into a bare table.

Only the database's work is timed. The rows are read back from ``resources`` once, as the
binary COPY stream PostgreSQL itself produces (``COPY ... TO STDOUT (FORMAT binary)``),
into a file; each timed run sends that file unchanged, so neither building the objects nor
encoding them is on the clock, for this baseline or (in the benchmarks) for what it is
compared with.

Two tables, two figures:

* ``default``: ``LIKE resources`` as PostgreSQL makes it: objects over ~2 KB are compressed
  (pglz on the embedded server, lz4 where the server's ``default_toast_compression`` says).
* ``uncompressed``: the same with the object column ``STORAGE EXTERNAL`` and the row size
  ``resources`` keeps inline (``toast_tuple_target``), as the store keeps objects
  (migration 4). The benchmarks' targets are against this one.

Each figure is the median of ``RUNS`` runs: one COPY of a few seconds is noisy on a shared
machine.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from benchmarks._procs import log

RUNS = 3
BARE = "bare"
STORAGE = ("default", "uncompressed")


@dataclass(frozen=True, kw_only=True, slots=True)
class CopyRates:
    rows: int
    default: float  # rows/s, median of RUNS
    uncompressed: float


async def copy_rates(conn: asyncpg.Connection, *, where: str, args: tuple[object, ...], spool: Path,
                     runs: int = RUNS) -> CopyRates:
    """COPY the rows of ``resources`` matching ``where`` (a literal condition with ``$n``
    parameters ``args``) into a bare table, ``runs`` times per storage; rows/s, medians."""
    columns = [r["column_name"] for r in await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'resources'"
        " ORDER BY ordinal_position")]
    listed = ", ".join(columns)
    await conn.copy_from_query(f"SELECT {listed} FROM resources WHERE {where}", *args,
                               output=str(spool), format="binary")
    rows = int(await conn.fetchval(f"SELECT count(*) FROM resources WHERE {where}", *args))
    try:
        rates = {storage: [rows / await _timed_copy(conn, columns=columns, spool=spool, storage=storage)
                           for _ in range(runs)] for storage in STORAGE}
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {BARE}")
        await asyncio.to_thread(spool.unlink, missing_ok=True)
    medians = {storage: statistics.median(values) for storage, values in rates.items()}
    log(f"raw COPY of {rows} rows: default storage {_show(rates['default'])},"
        f" uncompressed {_show(rates['uncompressed'])} rows/s")
    return CopyRates(rows=rows, default=medians["default"], uncompressed=medians["uncompressed"])


async def _timed_copy(conn: asyncpg.Connection, *, columns: list[str], spool: Path, storage: str) -> float:
    await conn.execute(f"DROP TABLE IF EXISTS {BARE}")
    await conn.execute(f"CREATE TABLE {BARE} (LIKE resources)")
    if storage == "uncompressed":
        target = await conn.fetchval(
            "SELECT coalesce((SELECT split_part(o, '=', 2) FROM unnest(reloptions) AS o"
            " WHERE o LIKE 'toast_tuple_target=%'), '2032') FROM pg_class WHERE oid = 'resources'::regclass")
        await conn.execute(f"ALTER TABLE {BARE} SET (toast_tuple_target = {int(target)})")
        await conn.execute(f"ALTER TABLE {BARE} ALTER COLUMN object SET STORAGE EXTERNAL")
    await conn.execute("CHECKPOINT")  # no earlier run's dirty pages written on this one's clock
    started = time.perf_counter()
    await conn.copy_to_table(BARE, source=str(spool), columns=columns, format="binary")
    return time.perf_counter() - started


def _show(rates: list[float]) -> str:
    return "/".join(f"{r:.0f}" for r in rates)
