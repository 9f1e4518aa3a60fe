"""Writers draw change numbers freely; readers stop at the horizon (migration 18,
docs/design.md "Sequence numbers and the horizon"). Real concurrent transactions."""

from __future__ import annotations

import asyncio

import asyncpg

from syncer.ingest import Store
from tests.factories import PODS, event, pod
from tests.in_flight import drawn, horizon, write_in_flight

WRITERS = 6
BATCHES = 20


async def test_an_open_write_holds_the_horizon_below_its_number(store: Store, pool: asyncpg.Pool,
                                                                 db_url: str) -> None:
    async with write_in_flight(store, pool, db_url, cluster="a") as held:
        await store.apply_batch(cluster="b", rtype=PODS,
                                events=[event("ADDED", pod(f"p{i}", 1)) for i in range(3)])
        later = await pool.fetchval("SELECT max(seq) FROM change_log WHERE cluster = 'b'")
        assert later > held, "the later write drew larger numbers and committed"
        assert await horizon(pool) == held - 1, "nothing at or above the open write's number is passed"
    assert await horizon(pool) == later
    assert await pool.fetchval("SELECT type FROM change_log WHERE seq = $1", held) == "DELETED"


async def test_an_aborted_write_does_not_hold_the_horizon(pool: asyncpg.Pool, db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        tx = conn.transaction()
        await tx.start()
        numbers = await conn.fetchval("SELECT change_log_numbers(3, 'nobody')")
        assert numbers == sorted(numbers) and len(set(numbers)) == 3
        assert await horizon(pool) < numbers[0]
        await tx.rollback()
        assert await horizon(pool) == numbers[-1] == await drawn(pool)
        # A connection lost mid-write ends its transaction the same way.
        await conn.execute("BEGIN")
        lost = await conn.fetchval("SELECT change_log_numbers(1, 'nobody')")
        assert await horizon(pool) < lost[0]
    finally:
        await conn.close()
    for _ in range(500):  # the server ends the session a moment after the socket closes
        if await horizon(pool) == lost[0]:
            break
        await asyncio.sleep(0.01)
    assert await horizon(pool) == lost[0]


async def test_markers_survive_numbers_past_32_bits(pool: asyncpg.Pool, db_url: str) -> None:
    start = 5 * 2**32 + 2**31 + 7  # a high word, and a low word with its sign bit set
    await pool.execute("SELECT setval('change_seq', $1)", start)
    conn = await asyncpg.connect(db_url)
    try:
        async with conn.transaction():
            numbers = await conn.fetchval("SELECT change_log_numbers(2, 'nobody')")
            assert numbers == [start + 1, start + 2]
            assert await horizon(pool) == start
    finally:
        await conn.close()
    assert await horizon(pool) == start + 2


async def test_other_advisory_locks_are_not_markers(pool: asyncpg.Pool, db_url: str) -> None:
    await pool.execute("SELECT setval('change_seq', 1000)")
    conn = await asyncpg.connect(db_url)
    try:
        # Bigint keys whose high word looks like a marker's class, shared and exclusive, and
        # a two-int4 key of the markers' class held exclusively: none is a write in flight.
        await conn.execute("SELECT pg_advisory_lock_shared($1)", 0x6B00_0000_0000_0005)
        await conn.execute("SELECT pg_advisory_lock($1)", 0x6B00_0000_0000_0006)
        await conn.execute("SELECT pg_advisory_lock(($1::bigint << 24)::integer, 3)", 0x6B)
        assert await horizon(pool) == 1000
    finally:
        await conn.close()


async def _writer(store: Store, cluster: str) -> None:
    for b in range(BATCHES):
        # Each object changes twice in a batch: its entries must follow the batch's order.
        await store.apply_batch(cluster=cluster, rtype=PODS, events=[
            event("ADDED" if b == 0 and step == 0 else "MODIFIED", pod(f"p{i}", b * 100 + i * 2 + step + 1))
            for i in range(4) for step in range(2)])


async def _follow(pool: asyncpg.Pool, done: asyncio.Event) -> list[int]:
    """Read like an aggregated watch: after the last position, up to the horizon read first."""
    seen: list[int] = []
    last = 0
    while True:
        finished = done.is_set()
        upto = await horizon(pool)
        rows = await pool.fetch("SELECT seq FROM change_log WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                                last, upto)
        seen.extend(r["seq"] for r in rows)
        last = max(last, upto)
        if finished:
            return seen
        await asyncio.sleep(0)


async def test_a_reader_of_many_writers_gets_every_change_once(store: Store, pool: asyncpg.Pool) -> None:
    done = asyncio.Event()
    reader = asyncio.create_task(_follow(pool, done))
    await asyncio.gather(*(_writer(store, f"c{w}") for w in range(WRITERS)))
    done.set()
    seen = await reader
    everything = [r["seq"] for r in await pool.fetch("SELECT seq FROM change_log ORDER BY seq")]
    assert len(everything) == WRITERS * BATCHES * 4 * 2
    assert seen == everything, "a reader resuming at the horizon lost or repeated changes"
    # Within a write, numbers follow the batch; a row carries its object's last number.
    for cluster in (f"c{w}" for w in range(WRITERS)):
        rows = await pool.fetch("SELECT name, seq, resource_version FROM change_log WHERE cluster = $1"
                                " ORDER BY name, seq", cluster)
        for name in {r["name"] for r in rows}:
            versions = [int(r["resource_version"]) for r in rows if r["name"] == name]
            assert versions == sorted(versions), f"{cluster}/{name}: numbers out of the batch's order"
        last = {r["name"]: r["seq"] for r in rows}
        stored = {r["name"]: r["seq"] for r in await pool.fetch(
            "SELECT name, seq FROM resources WHERE cluster = $1", cluster)}
        assert stored == last
