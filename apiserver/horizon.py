"""The change-log horizon: how far readers of the change log may go, and the aggregated
resourceVersion.

Writers draw change numbers freely, so numbers commit out of order; every number at or
below the horizon belongs to a transaction that has ended (``change_log_horizon()``,
migration 18; docs/design.md, "Sequence numbers and the horizon"). Two rules for readers:

- read up to the horizon, never past it: ``seq > last AND seq <= horizon``, then resume
  after the horizon, not after the last row read;
- read the horizon in its own statement, BEFORE the statement (or REPEATABLE READ
  transaction) whose snapshot reads the log. A statement's snapshot is taken when it
  starts, before a function in it reads ``pg_locks``: a writer that commits in between
  would be below the horizon yet invisible to the snapshot.

The horizon may dip below one read earlier by a few numbers (a writer that read the
sequence just before a reader, and marked itself just after): every reader that keeps a
position keeps the larger of the two.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

# The live horizon on the primary, the published one on a hot standby (migration 19,
# ``syncer.published``): the function decides, per statement.
HORIZON = "SELECT change_log_read_horizon()"
# The newest number handed out, committed or not: a resourceVersion above it was never ours.
DRAWN = "SELECT change_log_drawn()"


async def horizon(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """The horizon now (its own statement: see the module docstring)."""
    return int(await conn.fetchval(HORIZON))


async def drawn(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    return int(await conn.fetchval(DRAWN))


@contextlib.asynccontextmanager
async def snapshot(pool: asyncpg.Pool, *, isolation: str = "repeatable_read",
                   with_horizon: bool = True) -> AsyncIterator[tuple[asyncpg.Connection, int | None]]:
    """A read-only transaction whose snapshot is taken after the horizon was read, and the
    horizon (None without ``with_horizon``): everything at or below it is visible in the
    snapshot. Changes above it may be visible too (committed in between)."""
    async with pool.acquire() as conn:
        seen = await horizon(conn) if with_horizon else None
        async with conn.transaction(isolation=isolation, readonly=True):
            yield conn, seen
