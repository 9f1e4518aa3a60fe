"""The published horizon: the primary writes its change-log horizon where hot standbys
can read it (migration 20; docs/replicas.md).

A standby cannot compute the horizon itself (its ``pg_locks`` lacks the primary's in-flight
markers; its sequence runs ahead), so every syncer process, which is where writers run,
publishes it: one statement, a few times a second while changes arrive, that writes only
when the horizon has moved (an unchanged horizon writes nothing, not even WAL).

Why a standby that sees the row sees every change at or below it: the horizon H is the
number at or below which every transaction has ended, found by reading ``pg_locks`` after
those transactions released their markers. PostgreSQL writes a transaction's commit (or
abort) record to the WAL before it releases its locks, so every such record precedes this
statement's own commit record, and a standby replays the WAL in order: once the row with H
is visible there, every commit at or below H has been replayed, and a snapshot taken after
reading the row holds them all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import asyncpg
from aiohttp import web

from kube.tasks import STOP_TIMEOUT_S, stop_tasks
from syncer.store_app import POOL

log = logging.getLogger(__name__)

BUSY_INTERVAL_S = 0.05  # after the horizon moved: more changes are likely on their way
IDLE_INTERVAL_S = 0.1  # the delay a replica's readers see at most, beyond replay lag
RETRY_S = 1.0

# One statement: the horizon is computed and written together, and only forward (the live
# horizon may dip a few numbers below one computed earlier: docs/design.md).
_PUBLISH = """
UPDATE change_log_published p SET horizon = h.value, at = now()
FROM (SELECT change_log_horizon() AS value) h
WHERE p.horizon < h.value
RETURNING p.horizon
"""


async def publish_once(pool: asyncpg.Pool | asyncpg.Connection) -> int | None:
    """Publish the horizon if it moved; returns the new one, or None when it did not."""
    value: int | None = await pool.fetchval(_PUBLISH)
    return value


async def publish_forever(pool: asyncpg.Pool) -> None:
    while True:
        try:
            moved = await publish_once(pool)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("publishing the change-log horizon failed; trying again", extra={"error": str(exc)})
            await asyncio.sleep(RETRY_S)
            continue
        await asyncio.sleep(BUSY_INTERVAL_S if moved is not None else IDLE_INTERVAL_S)


def published_ctx() -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context publishing on the application's pool (added after it)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(publish_forever(app[POOL]), name="horizon publisher")
        try:
            yield
        finally:
            await stop_tasks([task], timeout=STOP_TIMEOUT_S, log=log)

    return ctx
