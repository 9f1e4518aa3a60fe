"""A change's time follows its sequence, under concurrent writers (migrations 5 and 17):
history turns times into sequences by that order (apiserver.query_history).

Writers draw numbers freely (migration 18) and read the clock right after: two writes in
flight at once may get times a moment apart in the other order. The writes of one cluster
and type go one at a time (pages of a snapshot too, when they write), so within one
(cluster, type), where an object's history lies, times never go back."""

from __future__ import annotations

import asyncio

import asyncpg

from syncer.ingest import Store
from tests.factories import PODS, pod

WRITERS = 6
BATCHES = 20

_INVERSIONS = """
SELECT count(*) FROM (SELECT at, lag(at) OVER (PARTITION BY cluster, grp, resource ORDER BY seq) AS earlier
                      FROM change_log) AS t
WHERE at < earlier
"""


async def _writer(store: Store, cluster: str) -> None:
    # Snapshot pages of many objects: their staging and parsing run before their numbers are
    # drawn, so a transaction that began first often draws its numbers last.
    for b in range(BATCHES):
        async with store.snapshot(cluster=cluster, rtype=PODS) as snap:
            await snap.add([pod(f"p{i}", b * 100 + i + 1, labels={"round": str(b)}) for i in range(40)])
            await snap.end(str(b + 1))


async def test_times_never_go_back_as_a_types_sequences_go_up(store: Store, pool: asyncpg.Pool) -> None:
    await asyncio.gather(*(_writer(store, f"c{w}") for w in range(WRITERS)))
    assert await pool.fetchval("SELECT count(*) FROM change_log") == WRITERS * BATCHES * 40
    assert await pool.fetchval(_INVERSIONS) == 0


async def test_pages_of_one_snapshot_take_times_in_order(store: Store, pool: asyncpg.Pool) -> None:
    snapshot_id = await store.snapshot_start(cluster="c1", rtype=PODS)
    pages = [[pod(f"p{page}-{i}", page * 100 + i + 1) for i in range(40)] for page in range(8)]
    await asyncio.gather(*(store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=snapshot_id, items=p)
                           for p in pages))
    assert await pool.fetchval("SELECT count(*) FROM change_log") == 8 * 40
    assert await pool.fetchval(_INVERSIONS) == 0
