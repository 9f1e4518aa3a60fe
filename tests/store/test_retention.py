"""Change-log retention: old entries go in chunks, the newest always stays."""

from __future__ import annotations

import asyncpg
import pytest

from kubepedia.config import parse_duration
from syncer.ingest import Store
from syncer.metrics import CHANGE_LOG_PRUNED
from syncer.retention import prune_once
from tests.factories import PODS, event, pod


async def test_old_entries_go_and_the_newest_stays(store: Store, pool: asyncpg.Pool) -> None:
    for i in range(7):
        await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod(f"p{i}", i + 1))])
    newest = await pool.fetchval("SELECT max(seq) FROM change_log")
    await pool.execute("UPDATE change_log SET at = now() - interval '8 days' WHERE seq <= $1 - 3", newest)
    pruned = CHANGE_LOG_PRUNED._value.get()
    assert await prune_once(pool, retention_s=7 * 86400, chunk=2) == 4
    assert CHANGE_LOG_PRUNED._value.get() == pruned + 4  # kubepedia_change_log_pruned_total
    assert [r["seq"] for r in await pool.fetch("SELECT seq FROM change_log ORDER BY seq")] == \
        list(range(newest - 2, newest + 1))
    await pool.execute("UPDATE change_log SET at = now() - interval '30 days'")
    assert await prune_once(pool, retention_s=7 * 86400) == 2
    assert await pool.fetchval("SELECT array_agg(seq) FROM change_log") == [newest]


async def test_only_the_lowest_numbers_go(store: Store, pool: asyncpg.Pool) -> None:
    """A later number whose transaction began earlier (an older ``at``) is not pruned ahead
    of a lower one: a watch from N must never pass the 410 check and miss N+1."""
    for i in range(5):
        await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod(f"p{i}", i + 1))])
    seqs = [r["seq"] for r in await pool.fetch("SELECT seq FROM change_log ORDER BY seq")]
    await pool.execute("UPDATE change_log SET at = now() - interval '8 days' WHERE seq = $1", seqs[2])
    assert await prune_once(pool, retention_s=7 * 86400) == 0
    assert [r["seq"] for r in await pool.fetch("SELECT seq FROM change_log ORDER BY seq")] == seqs


@pytest.mark.parametrize(("text", "seconds"), [("7d", 604800), ("12h", 43200), ("30m", 1800), ("90", 90),
                                               ("1.5h", 5400)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "-1d", "0", "7w", "abc"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)
