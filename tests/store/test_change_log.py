"""The change log: replays, notices and concurrent snapshot pages (readers under concurrent
writers: test_change_horizon.py)."""

from __future__ import annotations

import asyncio

import asyncpg

from syncer.ingest import Store
from syncer.schema import NOTIFY_CHANNEL
from tests.factories import PODS, event, pod


async def test_snapshot_replay_rewrites_nothing(store: Store, pool: asyncpg.Pool) -> None:
    page = [pod(f"p{i}", i + 1) for i in range(50)]
    for _ in range(2):
        async with store.snapshot(cluster="c1", rtype=PODS) as snap:
            await snap.add(page)
            await snap.end("100")
        if _ == 0:
            xmins = await pool.fetch("SELECT name, xmin::text AS x FROM resources ORDER BY name")
    assert await pool.fetch("SELECT name, xmin::text AS x FROM resources ORDER BY name") == xmins
    assert await pool.fetchval("SELECT count(*) FROM change_log") == 50


async def test_commits_notify_the_newest_sequence(store: Store, pool: asyncpg.Pool, db_url: str) -> None:
    listener = await asyncpg.connect(db_url)
    received: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: received.put_nowait(args[3]))
    try:
        await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod(f"p{i}", i + 1))
                                                                  for i in range(3)])
        last = await pool.fetchval("SELECT max(seq) FROM change_log")
        assert await asyncio.wait_for(received.get(), 5) == str(last)
        await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("p0", 1))])
        async with store.snapshot(cluster="c1", rtype=PODS) as snap:
            await snap.add([pod("p0", 1)])
            await snap.end("9")
        last = await pool.fetchval("SELECT max(seq) FROM change_log")
        assert await asyncio.wait_for(received.get(), 5) == str(last), "deletions notify too"
        assert received.empty(), "a replay that changed nothing notified nobody"
    finally:
        await listener.close()


async def test_pages_of_one_snapshot_commit_concurrently(store: Store, pool: asyncpg.Pool) -> None:
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("old", 1))])
    snapshot_id = await store.snapshot_start(cluster="c1", rtype=PODS)
    pages = [[pod(f"p{page}-{i}", 100 + page * 50 + i) for i in range(50)] for page in range(6)]
    await asyncio.gather(*(store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=snapshot_id, items=p)
                           for p in pages))
    result = await store.snapshot_end(cluster="c1", rtype=PODS, snapshot_id=snapshot_id,
                                      resource_version="999", count=300)
    assert result.deleted == 1
    assert await pool.fetchval("SELECT count(*) FROM resources") == 300
    assert await pool.fetchval("SELECT object_count FROM sync_state") == 300
    seqs = [r["seq"] for r in await pool.fetch("SELECT seq FROM change_log ORDER BY seq")]
    assert seqs == list(range(seqs[0], seqs[0] + 302)), "1 + 300 ADDED + 1 DELETED, each number once"


async def test_pages_of_one_snapshot_write_one_at_a_time(store: Store, pool: asyncpg.Pool,
                                                          db_url: str) -> None:
    """A page that has drawn its numbers keeps every other page of its snapshot from
    drawing until it ends: the summaries that triggers keep take their rows in each
    statement's order, and two pages of one type writing at once could deadlock."""
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("held", 1))])
    snapshot_id = await store.snapshot_start(cluster="c1", rtype=PODS)
    holder = await asyncpg.connect(db_url)
    tx = holder.transaction()
    await tx.start()
    first = second = None
    try:
        await holder.execute("SELECT 1 FROM resources WHERE name = 'held' FOR UPDATE")
        before = await pool.fetchval("SELECT change_log_drawn()")
        # Its merge updates "held" and waits for the holder, its numbers drawn.
        first = asyncio.create_task(store.snapshot_page(
            cluster="c1", rtype=PODS, snapshot_id=snapshot_id, items=[pod("held", 2), pod("a", 3)]))
        while await pool.fetchval("SELECT change_log_drawn()") < before + 2:
            assert not first.done(), first
            await asyncio.sleep(0.01)
        second = asyncio.create_task(store.snapshot_page(
            cluster="c1", rtype=PODS, snapshot_id=snapshot_id, items=[pod("b", 4)]))
        waiting = "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted"
        while await pool.fetchval(waiting) < 2:  # the first page, and the second
            if second.done():
                break
            await asyncio.sleep(0.01)
        assert not second.done(), "a second page wrote while the first was in flight"
        assert await pool.fetchval("SELECT change_log_drawn()") == before + 2
    finally:
        await tx.rollback()
        await holder.close()
        await asyncio.gather(*(t for t in (first, second) if t is not None))
    await store.snapshot_end(cluster="c1", rtype=PODS, snapshot_id=snapshot_id, resource_version="9", count=3)
    assert await pool.fetchval("SELECT count(*) FROM resources") == 3
