"""Inspection runs: every check of ``apiserver.query_inspections.CHECKS`` over the whole store,
stored as one run, on request (``POST /kubepedia/v1/inspections/runs``) or on a schedule
(``kubepedia serve --inspect-every``, in the syncer's process).

Every run is a full one (every cluster, namespace and type); what a reader sees of it is
limited to its scope when it is served (``apiserver.inspections``), from the identity each
finding is stored with. So one scheduled run serves every reader, and its history is the
same for all of them but for what their scope hides.

A run is one transaction: a reader sees all of it or none of it. For each check it keeps
at most ``FINDINGS_PER_CHECK`` findings (the first by cluster, namespace, type and name)
and counts every one of them per cluster, namespace and type (``inspection_counts``), so a
report says exactly how many more a reader's scope holds, and the history is read from the
counts alone. Runs take a transaction-level advisory lock: one at a time across every
process sharing the store (two syncer replicas, an API asked to run).

Retention: runs older than ``Retention.max_age_s`` or beyond the newest ``max_runs`` are
deleted with their findings and counts; the findings of runs older than the newest
``findings_runs`` are deleted too (the history keeps their counts).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg as pg_dialect

from apiserver.query import EVERYTHING_SCOPE
from apiserver.query_inspections import CHECKS, Check
from syncer.schema import inspection_counts, inspection_findings

log = logging.getLogger(__name__)

FINDINGS_PER_CHECK = 1000
RUN_TIMEOUT_S = 300.0  # each statement of a run
MIN_REQUEST_INTERVAL_S = 10.0  # a run asked for this soon after another one answers that one
INSPECTION_LOCK = 0x6B75_6265_0010
_DIALECT = pg_dialect.dialect()  # type: ignore[no-untyped-call]
# The run's own settings: its statements may take longer than a read's (the API pool's
# timeout), and the checks' conditions on types are constants that a cached plan serves.
_SETTINGS = (
    "SELECT set_config('statement_timeout', $1, true), set_config('plan_cache_mode', 'auto', true),"
    " set_config('work_mem', '64MB', true)"
)
_LATEST_START = "SELECT max(started_at) > now() - make_interval(secs => $1) FROM inspection_runs"
_RECENT = (
    "SELECT id FROM inspection_runs WHERE finished_at IS NOT NULL"
    " AND started_at > now() - make_interval(secs => $1) ORDER BY id DESC LIMIT 1"
)
_BEGIN = "INSERT INTO inspection_runs (trigger) VALUES ($1) RETURNING id"
_FINISH = "UPDATE inspection_runs SET finished_at = clock_timestamp() WHERE id = $1"
_PRUNE_RUNS = """
DELETE FROM inspection_runs WHERE started_at < now() - make_interval(secs => $1)
    OR id <= (SELECT id FROM inspection_runs ORDER BY id DESC OFFSET $2 LIMIT 1)
"""
_PRUNE_FINDINGS = """
WITH old AS (SELECT id FROM inspection_runs WHERE findings_kept
             AND id <= (SELECT id FROM inspection_runs ORDER BY id DESC OFFSET $1 LIMIT 1)),
     gone AS (DELETE FROM inspection_findings f USING old WHERE f.run_id = old.id)
UPDATE inspection_runs r SET findings_kept = false FROM old WHERE r.id = old.id
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class Retention:
    max_age_s: float = 30 * 24 * 3600.0
    max_runs: int = 5000
    findings_runs: int = 100  # the newest runs whose findings are kept


@dataclass(frozen=True, kw_only=True, slots=True)
class Started:
    """A run asked for: its id, and whether it is one that had just run (not a new one)."""

    run_id: int
    reused: bool


def _compiled(stmt: sa.Insert) -> tuple[str, list[Any]]:
    result = stmt.compile(dialect=_DIALECT)
    return result.string, [result.params[name] for name in result.positiontup or ()]


def store_statement(check: Check, *, run_id: int, cap: int) -> sa.Insert:
    """One check's findings into the run: at most ``cap`` kept, every one counted."""
    matches = check.statement(EVERYTHING_SCOPE).cte("matches")  # read twice: materialized once
    m = matches.c
    tag = (sa.literal(run_id, sa.BigInteger), sa.literal(check.name), sa.literal(check.severity))
    kept = (
        sa.select(*tag, m.cluster, m.grp, m.version, m.resource, m.namespace, m.name, m.message)
        .order_by(m.cluster, m.namespace, m.grp, m.resource, m.name)
        .limit(cap)
    )
    f = inspection_findings.c
    keep = (
        sa.insert(inspection_findings)
        .from_select(
            [
                f.run_id,
                f.check_name,
                f.severity,
                f.cluster,
                f.grp,
                f.version,
                f.resource,
                f.namespace,
                f.name,
                f.message,
            ],
            kept,
        )
        .cte("kept")
    )
    counted = sa.select(*tag, m.cluster, m.grp, m.resource, m.namespace, sa.func.count()).group_by(
        m.cluster, m.grp, m.resource, m.namespace
    )
    n = inspection_counts.c
    return (
        sa.insert(inspection_counts)
        .from_select(
            [n.run_id, n.check_name, n.severity, n.cluster, n.grp, n.resource, n.namespace, n.findings],
            counted,
        )
        .add_cte(keep)
    )


async def _run_checks(
    conn: asyncpg.Connection, *, trigger: str, checks: dict[str, Check], cap: int, retention: Retention
) -> int:
    run_id: int = await conn.fetchval(_BEGIN, trigger)
    for check in checks.values():
        sql, params = _compiled(store_statement(check, run_id=run_id, cap=cap))
        await conn.execute(sql, *params)
    await conn.execute(_FINISH, run_id)
    await conn.execute(_PRUNE_RUNS, retention.max_age_s, retention.max_runs)
    await conn.execute(_PRUNE_FINDINGS, retention.findings_runs)
    return run_id


async def run_requested(
    pool: asyncpg.Pool,
    *,
    min_interval_s: float = MIN_REQUEST_INTERVAL_S,
    checks: dict[str, Check] = CHECKS,
    cap: int = FINDINGS_PER_CHECK,
    retention: Retention = Retention(),
) -> Started:
    """A run for a request: waits for one in progress, and answers a run that started less than
    ``min_interval_s`` ago instead of running another (a client in a loop costs one run per
    interval, not one per request)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_SETTINGS, str(round(RUN_TIMEOUT_S * 1000)))
        await conn.execute("SELECT pg_advisory_xact_lock($1)", INSPECTION_LOCK)
        recent = await conn.fetchval(_RECENT, min_interval_s)
        if recent is not None:
            return Started(run_id=recent, reused=True)
        run_id = await _run_checks(conn, trigger="request", checks=checks, cap=cap, retention=retention)
    log.info("inspection run", extra={"run": run_id, "trigger": "request"})
    return Started(run_id=run_id, reused=False)


async def run_scheduled(
    pool: asyncpg.Pool,
    *,
    every_s: float,
    checks: dict[str, Check] = CHECKS,
    cap: int = FINDINGS_PER_CHECK,
    retention: Retention = Retention(),
) -> int | None:
    """A scheduled run, or None when another process runs one now or one started within half
    the interval (two syncer replicas share a schedule rather than doubling it)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_SETTINGS, str(round(RUN_TIMEOUT_S * 1000)))
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", INSPECTION_LOCK):
            return None
        if await conn.fetchval(_LATEST_START, every_s / 2):
            return None
        run_id = await _run_checks(conn, trigger="schedule", checks=checks, cap=cap, retention=retention)
    log.info("inspection run", extra={"run": run_id, "trigger": "schedule"})
    return run_id


async def schedule(pool: asyncpg.Pool, *, every_s: float, retention: Retention = Retention()) -> None:
    """Run the checks every ``every_s`` seconds until cancelled, the first one an interval after
    the start (a process that restarts does not run them each time; what it would find right
    after starting is what the clusters' first lists have not brought yet); a failed run is
    logged and the next one comes on time."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await run_scheduled(pool, every_s=every_s, retention=retention)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("inspection run failed", extra={"error": str(exc)})
