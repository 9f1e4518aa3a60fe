"""A write held in flight: it has drawn its change number and cannot commit until let go.

The write is the ingest core's own (``Store.apply_batch``): a batch that deletes a stored
pod. Its numbered statement runs (the change-log entry is written with its number), then
its delete waits for a row lock a second connection holds on that pod, so its transaction
stays open, with its number drawn, until the context ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from syncer.ingest import Store
from tests.factories import PODS, event, pod

DEADLINE_S = 30.0  # only a failure waits this long


async def drawn(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT change_log_drawn()"))


async def horizon(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT change_log_horizon()"))


async def _until_drawn(pool: asyncpg.Pool, number: int, writer: asyncio.Task[object]) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while await drawn(pool) < number:
        if writer.done():
            writer.result()
            raise AssertionError("the held write ended before drawing its number")
        assert asyncio.get_running_loop().time() < deadline, "the held write drew no number"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def write_in_flight(store: Store, pool: asyncpg.Pool, db_url: str, *,
                          cluster: str, name: str = "held") -> AsyncIterator[int]:
    """Yields the change number of a write of ``cluster`` (the deletion of pod ``name``, stored
    first) that stays in flight until the body ends; then it commits."""
    await store.apply_batch(cluster=cluster, rtype=PODS, events=[event("ADDED", pod(name, 1))])
    holder = await asyncpg.connect(db_url)
    tx = holder.transaction()
    await tx.start()
    writer: asyncio.Task[object] | None = None
    try:
        await holder.execute("SELECT 1 FROM resources WHERE cluster = $1 AND name = $2 FOR UPDATE",
                             cluster, name)
        number = await drawn(pool) + 1  # nothing else writes meanwhile
        writer = asyncio.create_task(store.apply_batch(
            cluster=cluster, rtype=PODS, events=[event("DELETED", pod(name, 2))]))
        await _until_drawn(pool, number, writer)
        yield number
    finally:
        await tx.rollback()
        await holder.close()
        if writer is not None:
            await asyncio.wait_for(writer, DEADLINE_S)
