"""The horizon published for hot standbys (``syncer.published``, migration 20): a reader on
a standby never gets a number above a change the standby cannot see."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from apiserver import horizon
from syncer.db import connect, create_pool
from syncer.ingest import Store
from syncer.migrations import migrate
from syncer.published import publish_once
from tests.factories import PODS, event, pod
from tests.replicas import Pair, primary_and_standby


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with primary_and_standby() as made:
        yield made


async def _until(conn: asyncpg.Connection, sql: str, want: int) -> int:
    async with asyncio.timeout(30):
        while True:
            got = int(await conn.fetchval(sql) or 0)
            if got >= want:
                return got
            await asyncio.sleep(0.05)


async def test_a_standby_reads_the_published_horizon(pair: Pair) -> None:
    primary = await connect(pair.primary)
    standby = await connect(pair.standby)
    pool = await create_pool(pair.primary, max_size=4)
    try:
        await migrate(primary)
        store = Store(pool)
        await store.apply_batch(cluster="east", rtype=PODS, events=[event("ADDED", pod("a", 1))])
        # Replayed, but nothing published since: the standby's sequence is WAL-logged ahead of
        # the numbers drawn, and its pg_locks lacks the primary's markers.
        newest = int(await primary.fetchval("SELECT max(seq) FROM change_log"))
        await _until(standby, "SELECT max(seq) FROM change_log", newest)
        assert await horizon.horizon(standby) < newest, "the standby computed a horizon of its own"
        assert await publish_once(pool) == newest
        assert await publish_once(pool) is None, "an unchanged horizon was written again"
        assert await _until(standby, horizon.HORIZON, newest) == newest
        # Replay paused: the primary moves on, the standby's horizon stays within what it has.
        await standby.execute("SELECT pg_wal_replay_pause()")
        await store.apply_batch(cluster="east", rtype=PODS, events=[event("ADDED", pod("b", 2))])
        assert await publish_once(pool) == newest + 1
        seen = await horizon.horizon(standby)
        visible = await standby.fetchval("SELECT count(*) FROM change_log WHERE seq <= $1", seen)
        assert seen == newest and visible == 1
        await standby.execute("SELECT pg_wal_replay_resume()")
        assert await _until(standby, horizon.HORIZON, newest + 1) == newest + 1
        assert await horizon.horizon(primary) == newest + 1, "the primary reads its live horizon"
    finally:
        await pool.close()
        await standby.close()
        await primary.close()
