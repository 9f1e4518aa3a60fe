"""A change's time follows its sequence, under concurrent writers (migration 5): history
turns times into sequences by that order (apiserver.query_history)."""

from __future__ import annotations

import asyncio

import asyncpg

from syncer.ingest import Store
from tests.factories import PODS, pod

WRITERS = 6
BATCHES = 20

_INVERSIONS = """
SELECT count(*) FROM (SELECT at, lag(at) OVER (ORDER BY seq) AS earlier FROM change_log) AS t
WHERE at < earlier
"""


async def _writer(store: Store, cluster: str) -> None:
    # Snapshot pages of many objects: their staging and parsing run before the change-log
    # lock, so a transaction that began first often draws its numbers last.
    for b in range(BATCHES):
        async with store.snapshot(cluster=cluster, rtype=PODS) as snap:
            await snap.add([pod(f"p{i}", b * 100 + i + 1, labels={"round": str(b)}) for i in range(40)])
            await snap.end(str(b + 1))


async def test_times_never_go_back_as_sequences_go_up(store: Store, pool: asyncpg.Pool) -> None:
    await asyncio.gather(*(_writer(store, f"c{w}") for w in range(WRITERS)))
    assert await pool.fetchval("SELECT count(*) FROM change_log") == WRITERS * BATCHES * 40
    assert await pool.fetchval(_INVERSIONS) == 0
