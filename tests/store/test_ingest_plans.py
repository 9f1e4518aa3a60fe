"""Plans of the ingest core's set-based statements: linear in the rows they touch, whatever
the planner's statistics say."""

from __future__ import annotations

import re

import asyncpg

from syncer.ingest import _DELETE_UNSEEN, _STORED, Store
from tests.factories import PODS, pod

SNAPSHOT = 400


async def _explain(pool: asyncpg.Pool, sql: str, *args: object) -> str:
    """The executed plan of a statement, rolled back."""
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}", *args)
        finally:
            await tx.rollback()
    return "\n".join(r[0] for r in rows)


async def test_closing_a_snapshot_compares_each_key_once(store: Store, pool: asyncpg.Pool) -> None:
    """``snapshot_seen`` has no statistics of the open snapshot (the planner expects one key):
    finding what it did not see must not compare every row with every key seen."""
    snapshot_id = await store.snapshot_start(cluster="c1", rtype=PODS)
    await store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=snapshot_id,
                              items=[pod(f"p{i}", i + 1) for i in range(SNAPSHOT)])
    plan = await _explain(pool, _DELETE_UNSEEN, "c1", "", "pods", snapshot_id)
    removed = [int(n) for n in re.findall(r"Rows Removed by Join Filter: (\d+)", plan)]
    assert sum(removed) < SNAPSHOT, plan
    assert "Nested Loop Anti Join" not in plan, plan


async def test_a_first_snapshot_probes_stored_keys_by_the_whole_key(store: Store, pool: asyncpg.Pool) -> None:
    """Once a page has grown an empty ``resources``, the next page's lookup of what is stored
    reads one index entry per key, not every row of the type (statistics are refreshed)."""
    snapshot_id = await store.snapshot_start(cluster="c1", rtype=PODS)
    await store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=snapshot_id,
                              items=[pod(f"p{i}", i + 1) for i in range(SNAPSHOT)])
    keys = [f"q{i}" for i in range(SNAPSHOT)]
    plan = await _explain(pool, _STORED, "c1", "", "pods", ["default"] * len(keys), keys)
    assert "Rows Removed by Filter" not in plan, plan
