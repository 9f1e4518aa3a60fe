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

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import asyncpg

from apiserver.params import too_large

# The live horizon on the primary, the published one on a hot standby (migration 20,
# ``syncer.published``): the function decides, per statement.
HORIZON = "SELECT change_log_read_horizon()"
# The newest number handed out, committed or not: a resourceVersion above it was never ours.
DRAWN = "SELECT change_log_drawn()"
RECOVERY = "SELECT pg_is_in_recovery()"
# A hot standby behind a version asked for (a continue token's, a watch's) is waited for this
# long, then the request is answered as kube-apiserver answers a version it has not reached
# yet: 504 Timeout, cause ResourceVersionTooLarge, Retry-After 1 (its watch cache waits 3 s).
LAG_WAIT_S = 3.0
LAG_POLL_S = 0.05


async def horizon(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """The horizon now (its own statement: see the module docstring)."""
    return int(await conn.fetchval(HORIZON))


async def drawn(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    return int(await conn.fetchval(DRAWN))


async def reach(conn: asyncpg.Connection | asyncpg.Pool, wanted: int, *, seen: int | None = None,
                wait_s: float = LAG_WAIT_S) -> int:
    """The horizon, once it is at least ``wanted`` on a hot standby: a standby replaying
    behind a version a client holds is waited for ``wait_s``, then a 504 (``too_large``).
    On the primary the horizon is returned at once: there a version once given is never
    above what a later snapshot holds (the horizon only dips below it for writes that drew
    numbers above it); the caller checks numbers never handed out."""
    seen = await horizon(conn) if seen is None else seen
    if seen >= wanted or not await conn.fetchval(RECOVERY):
        return seen
    deadline = time.monotonic() + wait_s
    while seen < wanted:
        if time.monotonic() >= deadline:
            raise too_large(wanted, seen)
        await asyncio.sleep(LAG_POLL_S)
        seen = await horizon(conn)
    return seen


@contextlib.asynccontextmanager
async def snapshot(pool: asyncpg.Pool, *, isolation: str = "repeatable_read", with_horizon: bool = True,
                   at_least: int | None = None) -> AsyncIterator[tuple[asyncpg.Connection, int | None]]:
    """A read-only transaction whose snapshot is taken after the horizon was read, and the
    horizon (None without ``with_horizon``): everything at or below it is visible in the
    snapshot. Changes above it may be visible too (committed in between). With
    ``at_least`` (a continue token's version), a standby is first waited for until it has
    everything up to it (``reach``): a page is never read from an older snapshot."""
    async with pool.acquire() as conn:
        seen = await horizon(conn) if with_horizon or at_least is not None else None
        if at_least is not None:
            seen = await reach(conn, at_least, seen=seen)
        async with conn.transaction(isolation=isolation, readonly=True):
            yield conn, seen
