"""Removing a cluster while its writes are in flight leaves nothing of it behind.

A writer is held inside its transaction right after the ``Registered`` guard passed (by a
second guard that waits for the test), the cluster is removed meanwhile, then the writer
goes on. ``Registered`` key-share-locks the cluster row, so the removal's delete waits for
the writer and then deletes what it wrote; the ``removing_at`` mark refuses writers that
start while the removal waits. Without the lock the writer's rows would outlive the
removal; without the mark a writer arriving during the wait would still be let in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import pytest

from syncer.ingest import FenceLost, Registered, Store
from tests.factories import NODES, PODS, SECRETS, event, pod

DEADLINE_S = 60.0  # for conditions that come within milliseconds unless something is broken


@dataclass(eq=False)
class Held:
    """A guard that stops every writer passing it until ``release`` is set."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    entered: int = 0

    async def check(self, conn: asyncpg.Connection) -> None:
        self.entered += 1
        await self.release.wait()


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll a condition until it holds (the deadline is for failures, not a speed check)."""
    async with asyncio.timeout(DEADLINE_S):
        while not await condition():  # noqa: ASYNC110 (database state: nothing to await)
            await asyncio.sleep(0.02)


async def test_removal_deletes_what_writes_in_flight_wrote(pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO clusters (name, mode) VALUES ('c1', 'push')")
    store = Store(pool, guards=[Registered(cluster="c1")])
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("before", 1))])
    held = Held()
    held_store = Store(pool, guards=[Registered(cluster="c1"), held])
    batch = asyncio.create_task(held_store.apply_batch(
        cluster="c1", rtype=PODS, events=[event("ADDED", pod("a", 2)), event("ADDED", pod("b", 3))]))
    snapshot = asyncio.create_task(held_store.snapshot_start(cluster="c1", rtype=NODES))
    removal = asyncio.create_task(asyncio.sleep(0, result=-1))

    async def both_held() -> bool:
        return held.entered == 2

    async def removal_waits() -> bool:
        """The removal's DELETE of the cluster row waits for a lock (or, broken, is done)."""
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM clusters%'")
        return removal.done() or bool(waiting)

    try:
        await _until(both_held)
        removal = asyncio.create_task(store.remove_cluster(cluster="c1"))
        await _until(removal_waits)

        # A write that starts now, while the removal waits, is refused at once.
        with pytest.raises(FenceLost, match="not registered"):
            await asyncio.wait_for(store.apply_batch(
                cluster="c1", rtype=SECRETS, events=[event("ADDED", _secret("late", 4))]), DEADLINE_S)
    finally:
        held.release.set()
        await asyncio.gather(batch, snapshot, removal, return_exceptions=True)
    assert (await batch).applied == 2 and isinstance(await snapshot, int), "writes in flight finish"
    assert await removal == 3, "the removal deleted the rows the writes in flight made"
    for table in ("resources", "sync_state", "snapshots", "snapshot_seen"):
        left = await pool.fetchval(f"SELECT count(*) FROM {table} WHERE cluster = 'c1'")
        assert left == 0, f"{table} keeps {left} rows of the removed cluster"
    assert await pool.fetchval("SELECT count(*) FROM clusters") == 0
    last = await pool.fetch(
        "SELECT DISTINCT ON (name) name, type FROM change_log WHERE cluster = 'c1' ORDER BY name, seq DESC")
    assert {r["name"]: r["type"] for r in last} == {"before": "DELETED", "a": "DELETED", "b": "DELETED"}



def _secret(name: str, rv: int) -> dict[str, object]:
    meta = {"name": name, "namespace": "default", "uid": f"s-{name}", "resourceVersion": str(rv)}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta}
