"""The change log hands out its sequence in commit order, under concurrent writers."""

from __future__ import annotations

import asyncio

import asyncpg

from syncer.ingest import Store
from syncer.schema import NOTIFY_CHANNEL
from tests.factories import PODS, event, pod

WRITERS = 6
BATCHES = 25


async def _writer(store: Store, cluster: str) -> None:
    for b in range(BATCHES):
        await store.apply_batch(cluster=cluster, rtype=PODS, events=[
            event("ADDED" if b == 0 else "MODIFIED", pod(f"p{i}", b * 10 + i + 1)) for i in range(5)])


async def _follow(pool: asyncpg.Pool, done: asyncio.Event) -> list[int]:
    """Read like an aggregated watch: everything after the last number seen."""
    seen: list[int] = []
    last = 0
    while True:
        finished = done.is_set()
        rows = await pool.fetch("SELECT seq FROM change_log WHERE seq > $1 ORDER BY seq", last)
        if rows:
            seen.extend(r["seq"] for r in rows)
            last = rows[-1]["seq"]
        if finished:
            return seen
        await asyncio.sleep(0)


async def test_reader_resuming_after_last_seen_misses_nothing(store: Store, pool: asyncpg.Pool) -> None:
    done = asyncio.Event()
    reader = asyncio.create_task(_follow(pool, done))
    await asyncio.gather(*(_writer(store, f"c{w}") for w in range(WRITERS)))
    done.set()
    seen = await reader
    everything = [r["seq"] for r in await pool.fetch("SELECT seq FROM change_log ORDER BY seq")]
    assert len(everything) == WRITERS * BATCHES * 5
    assert seen == everything, "a reader resuming after the largest number it saw lost changes"
    assert everything == list(range(everything[0], everything[0] + len(everything))), "no gaps"


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
    assert seqs == list(range(seqs[0], seqs[0] + 302)), "1 + 300 ADDED + 1 DELETED, no gaps"
