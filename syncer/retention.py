"""Change-log retention: entries older than the retention period are pruned in the background.

Pruning deletes in small chunks, oldest first, each in its own short transaction, so it
never holds up ingest; it always keeps the newest entry, so the aggregated resourceVersion
(the newest sequence) never goes back. A watch from before the oldest kept entry is then
answered 410 Expired (docs/design.md, "The change log keeps before-images"). Entries pruned
are counted (``kubepedia_change_log_pruned_total``); the oldest one kept is the read API's
``kubepedia_change_log_oldest_age_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import asyncpg
from aiohttp import web

from kube.tasks import STOP_TIMEOUT_S, stop_tasks
from syncer.metrics import CHANGE_LOG_PRUNED
from syncer.store_app import POOL

log = logging.getLogger(__name__)

DEFAULT_RETENTION_S = 7 * 24 * 3600
CHUNK = 5000
INTERVAL_S = 60.0

# Only a run of the lowest numbers goes: rows written before migration 5 carry the time
# their transaction began, not when they drew their numbers, so deleting by time alone could
# drop N+1 and keep N, and a watch from N would pass the 410 check and miss N+1. Everything
# below the oldest entry still within the retention period (and below the newest entry)
# goes, lowest first.
_PRUNE = """
DELETE FROM change_log c
WHERE (c.cluster, c.seq) IN (
    SELECT cluster, seq FROM change_log
    WHERE seq < LEAST(
        coalesce((SELECT min(seq) FROM change_log WHERE at >= now() - make_interval(secs => $1)),
                 (SELECT max(seq) FROM change_log)),
        (SELECT max(seq) FROM change_log))
    ORDER BY seq LIMIT $2)
"""


async def prune_once(pool: asyncpg.Pool, *, retention_s: float, chunk: int = CHUNK) -> int:
    """Delete expired entries, a chunk per transaction; returns how many went."""
    total = 0
    while True:
        status: str = await pool.execute(_PRUNE, retention_s, chunk)
        deleted = int(status.split()[-1])
        CHANGE_LOG_PRUNED.inc(deleted)
        total += deleted
        if deleted < chunk:
            return total
        await asyncio.sleep(0)  # let ingest in between chunks


async def prune_forever(pool: asyncpg.Pool, *, retention_s: float, interval_s: float = INTERVAL_S) -> None:
    while True:
        try:
            deleted = await prune_once(pool, retention_s=retention_s)
            if deleted:
                log.info("change log pruned", extra={"deleted": deleted})
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("change log pruning failed; trying again later", extra={"error": str(exc)})
        await asyncio.sleep(interval_s)


def retention_ctx(*, retention_s: float) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running the pruner on the application's pool (added after it)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(prune_forever(app[POOL], retention_s=retention_s),
                                   name="change-log pruning")
        try:
            yield
        finally:
            await stop_tasks([task], timeout=STOP_TIMEOUT_S, log=log)

    return ctx
