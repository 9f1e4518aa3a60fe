"""Readers of the change log stop below a write still in flight (docs/design.md, "Sequence
numbers and the horizon"): a list's resourceVersion, the watch feed and a watch over HTTP."""

from __future__ import annotations

from typing import Any

import asyncpg

from apiserver.app import build_app
from apiserver.feed import ChangeFeed
from syncer.ingest import Store
from tests.access import granted
from tests.apiserver.conftest import Api, next_events, serving, watching
from tests.factories import PODS, event, pod
from tests.in_flight import write_in_flight

Synced = dict[str, list[dict[str, Any]]]


def _who(e: dict[str, Any]) -> tuple[str, str, str]:
    meta = e["object"]["metadata"]
    return (e["type"], meta["annotations"]["kubepedia.io/cluster"], meta["name"])


async def _rv(api: Api) -> int:
    _, body = await api.get("/api/v1/pods", limit="1")
    return int(body["metadata"]["resourceVersion"])


async def test_readers_do_not_pass_a_write_in_flight(db_url: str, filled: Synced, pool: asyncpg.Pool) -> None:
    store = Store(pool)
    later = [f"later-{i}" for i in range(3)]
    feed = ChangeFeed(db_url)  # a second process's feed, read by hand: when it reads is known
    async with serving(build_app(database_url=db_url, access=granted())) as api:
        start = await _rv(api)
        with feed.following():
            await feed._restart(pool)
            async with watching(api, "/api/v1/pods", resourceVersion=str(start)) as watch:
                async with write_in_flight(store, pool, db_url, cluster="east") as held:
                    await store.apply_batch(cluster="west", rtype=PODS,
                                            events=[event("ADDED", pod(name, 5)) for name in later])
                    newest = await pool.fetchval("SELECT max(seq) FROM change_log")
                    assert newest > held
                    assert await _rv(api) == held - 1, "a list's resourceVersion passed a write in flight"
                    await feed._read(pool)
                    assert feed.read_upto == held - 1
                    assert [c.seq for c in feed.tail if c.seq >= held] == []
                await feed._read(pool)
                assert [c.seq for c in feed.tail if c.seq >= held] == [held, *range(newest - 2, newest + 1)]
                assert feed.read_upto == newest
                assert await _rv(api) == newest
                got = [_who(e) for e in await next_events(watch, 5)]
    assert got == [("ADDED", "east", "held"), ("DELETED", "east", "held"),
                   *(("ADDED", "west", name) for name in later)], "the watch passed the write in flight"
