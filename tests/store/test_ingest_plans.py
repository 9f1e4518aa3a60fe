"""Plans of the ingest core's set-based statements: linear in the rows they touch, whatever
the planner's statistics say."""

from __future__ import annotations

import re

import asyncpg

from syncer.db import create_pool
from syncer.ingest import _DELETE_UNSEEN, _STORED, Store
from tests.factories import PODS, event, pod

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


async def test_closing_a_snapshot_of_a_cluster_the_statistics_do_not_know(
        store: Store, pool: asyncpg.Pool) -> None:
    """A second cluster's snapshot, smaller than the first (no statistics refresh since):
    the planner expects none of its rows, and the set of keys not seen must still be
    computed once, not once per row."""
    first = await store.snapshot_start(cluster="c1", rtype=PODS)
    await store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=first,
                              items=[pod(f"p{i}", i + 1) for i in range(2 * SNAPSHOT)])
    await store.snapshot_end(cluster="c1", rtype=PODS, snapshot_id=first, resource_version="1",
                             count=2 * SNAPSHOT)
    await pool.execute("ANALYZE resources")
    second = await store.snapshot_start(cluster="c2", rtype=PODS)
    await store.snapshot_page(cluster="c2", rtype=PODS, snapshot_id=second,
                              items=[pod(f"p{i}", i + 1) for i in range(SNAPSHOT)])
    plan = await _explain(pool, _DELETE_UNSEEN, "c2", "", "pods", second)
    loops = [int(n) for n in re.findall(r"SetOp Except.*loops=(\d+)", plan)]
    assert loops and max(loops) == 1, plan
    removed = [int(n) for n in re.findall(r"Rows Removed by Join Filter: (\d+)", plan)]
    assert sum(removed) < SNAPSHOT, plan


async def test_a_first_snapshot_probes_stored_keys_by_the_whole_key(store: Store, pool: asyncpg.Pool) -> None:
    """Once a page has grown an empty ``resources``, the next page's lookup of what is stored
    reads one index entry per key, not every row of the type (statistics are refreshed)."""
    snapshot_id = await store.snapshot_start(cluster="c1", rtype=PODS)
    await store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=snapshot_id,
                              items=[pod(f"p{i}", i + 1) for i in range(SNAPSHOT)])
    keys = [f"q{i}" for i in range(SNAPSHOT)]
    plan = await _explain(pool, _STORED, "c1", "", "pods", ["default"] * len(keys), keys)
    assert "Rows Removed by Filter" not in plan, plan


async def _calls(conn: asyncpg.Connection, function: str) -> int:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    calls = await conn.fetchval("SELECT calls FROM pg_stat_user_functions WHERE funcname = $1", function)
    return int(calls or 0)


async def test_updating_stored_rows_computes_their_columns_once(db_url: str) -> None:
    """A batch that only replaces stored rows is one UPDATE: an INSERT .. ON CONFLICT would
    compute each row's generated columns (the pod report's) twice."""
    pool = await create_pool(db_url, min_size=1, max_size=1, server_settings={"track_functions": "all"})
    try:
        store = Store(pool)
        n = 20
        await store.apply_batch(cluster="c1", rtype=PODS, events=[
            event("ADDED", pod(f"p{i}", i + 1)) for i in range(n)])
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_stat_force_next_flush()")
            before = await _calls(conn, "kube_pod_restarts")
        await store.apply_batch(cluster="c1", rtype=PODS, events=[
            event("MODIFIED", pod(f"p{i}", n + i + 1, phase="Succeeded")) for i in range(n)])
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_stat_force_next_flush()")
            await conn.execute("SELECT 1")
            assert await _calls(conn, "kube_pod_restarts") - before == n
    finally:
        await pool.close()
