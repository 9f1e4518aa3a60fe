"""Watches across clusters from the change log: order, states at each change, selectors, 410."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg

from apiserver.app import build_app
from apiserver.keys import FEED
from syncer.ingest import Store
from tests.access import AUTH, granted
from tests.apiserver.conftest import Api, next_events, serving, watching
from tests.factories import PODS, event, pod

Synced = dict[str, list[dict[str, Any]]]
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def _who(e: dict[str, Any]) -> tuple[str, str, str]:
    meta = e["object"]["metadata"]
    return (e["type"], meta["annotations"]["kubepedia.io/cluster"], meta["name"])


async def _rv(api: Api) -> str:
    _, body = await api.get("/api/v1/pods", limit="1")
    return str(body["metadata"]["resourceVersion"])


def _changed(base: dict[str, Any], rv: int, **labels: str) -> dict[str, Any]:
    labels = {**base["metadata"]["labels"], **labels}
    meta = {**base["metadata"], "resourceVersion": str(rv), "labels": labels}
    return {**base, "metadata": meta}


async def test_every_change_in_order_with_the_state_it_made(api: Api, filled: Synced,
                                                            pool: asyncpg.Pool) -> None:
    store = Store(pool)
    rv = await _rv(api)
    target = filled["east"][0]
    first, second = _changed(target, 500, step="one"), _changed(target, 501, step="two")
    await store.apply_batch(cluster="east", rtype=PODS, events=[event("MODIFIED", first)])
    await store.apply_batch(cluster="east", rtype=PODS, events=[event("MODIFIED", second)])
    gone = filled["west"][1]
    await store.apply_batch(cluster="west", rtype=PODS, events=[event("DELETED", gone)])
    fresh = pod("fresh", 9, namespace="web")
    await store.apply_batch(cluster="edge", rtype=PODS, events=[event("ADDED", fresh)])
    # Started after the changes: everything comes from the change log, not from live state.
    async with watching(api, "/api/v1/pods", resourceVersion=rv) as events:
        got = await next_events(events, 4)
    name = target["metadata"]["name"]
    assert [_who(e) for e in got] == [("MODIFIED", "east", name), ("MODIFIED", "east", name),
                                      ("DELETED", "west", gone["metadata"]["name"]),
                                      ("ADDED", "edge", "fresh")]
    # Each event carries the object as that change left it, not as it is now.
    assert [e["object"]["metadata"]["labels"]["step"] for e in got[:2]] == ["one", "two"]
    member = got[2]["object"]["metadata"]["annotations"]["kubepedia.io/resource-version"]
    assert member == gone["metadata"]["resourceVersion"]
    # An event's resourceVersion is its change's sequence: resuming from one misses nothing.
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in got]
    assert versions == sorted(versions) and versions[0] > int(rv)
    async with watching(api, "/api/v1/pods", resourceVersion=str(versions[1])) as events:
        assert [_who(e) for e in await next_events(events, 2)] == [_who(e) for e in got[2:]]


async def test_changes_after_the_watch_opens_arrive(api: Api, filled: Synced, pool: asyncpg.Pool) -> None:
    rv = await _rv(api)
    async with watching(api, "/api/v1/namespaces/web/pods", resourceVersion=rv) as events:
        await Store(pool).apply_batch(cluster="west", rtype=PODS,
                                      events=[event("ADDED", pod("elsewhere", 3, namespace="default")),
                                              event("ADDED", pod("here", 4, namespace="web"))])
        assert [_who(e) for e in await next_events(events, 1)] == [("ADDED", "west", "here")]
        assert events.empty()


async def test_selectors_turn_leaving_into_deleted(api: Api, filled: Synced, pool: asyncpg.Pool) -> None:
    store = Store(pool)
    front = next(p for p in filled["east"] if p["metadata"]["labels"]["tier"] == "front")
    back = next(p for p in filled["east"] if p["metadata"]["labels"]["tier"] == "back")
    rv = await _rv(api)
    async with watching(api, "/clusters/east/api/v1/pods", resourceVersion=rv,
                        labelSelector="tier=front") as ev:
        await store.apply_batch(cluster="east", rtype=PODS, events=[
            event("MODIFIED", _changed(front, 600, tier="back")),
            event("MODIFIED", _changed(back, 601, tier="front")),
            event("MODIFIED", _changed(back, 602, tier="front", note="x"))])
        got = await next_events(ev, 3)
    assert [_who(e) for e in got] == [("DELETED", "east", front["metadata"]["name"]),
                                      ("ADDED", "east", back["metadata"]["name"]),
                                      ("MODIFIED", "east", back["metadata"]["name"])]


async def test_initial_events_then_a_bookmark(api: Api, filled: Synced) -> None:
    async with watching(api, "/clusters/west/api/v1/namespaces/payments/pods", sendInitialEvents="true",
                        resourceVersionMatch="NotOlderThan", resourceVersion="0",
                        allowWatchBookmarks="true") as events:
        expected = sorted(p["metadata"]["name"] for p in filled["west"]
                          if p["metadata"]["namespace"] == "payments")
        got = await next_events(events, len(expected) + 1)
    assert [e["type"] for e in got[:-1]] == ["ADDED"] * len(expected)
    assert sorted(e["object"]["metadata"]["name"] for e in got[:-1]) == expected
    assert got[-1]["type"] == "BOOKMARK"
    assert got[-1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_a_version_older_than_the_log_is_expired(api: Api, filled: Synced, pool: asyncpg.Pool) -> None:
    await pool.execute("DELETE FROM change_log WHERE seq < (SELECT max(seq) FROM change_log) - 5")
    async with watching(api, "/api/v1/pods", resourceVersion="1") as events:
        (got,) = await next_events(events, 1)
    assert got["type"] == "ERROR"
    assert (got["object"]["code"], got["object"]["reason"]) == (410, "Expired")


async def test_watch_as_table(api: Api, filled: Synced, pool: asyncpg.Pool) -> None:
    rv = await _rv(api)
    async with watching(api, "/api/v1/pods", headers={"Accept": TABLE}, resourceVersion=rv) as events:
        await Store(pool).apply_batch(cluster="edge", rtype=PODS, events=[event("ADDED", pod("t", 5))])
        (got,) = await next_events(events, 1)
    assert got["type"] == "ADDED" and got["object"]["kind"] == "Table"
    assert got["object"]["rows"][0]["cells"][:2] == ["edge", "t"]


async def test_bad_watch_versions(api: Api, filled: Synced) -> None:
    for rv in ("abc", "-1", "1" * 30, "\u00b2", "9" * 19):
        status, body = await api.get("/api/v1/pods", watch="1", resourceVersion=rv)
        assert status == 400 and body["kind"] == "Status", rv
    status, body = await api.get("/api/v1/pods", watch="1", resourceVersion=str(10**12))
    assert (status, body["reason"]) == (504, "Timeout")
    status, body = await api.get("/api/v1/pods", watch="1", sendInitialEvents="false", timeoutSeconds="1")
    assert status == 200


async def test_many_watches_end_cleanly(api: Api, filled: Synced) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        responses = [await session.get(api.url + "/api/v1/pods", params={"watch": "1", "timeoutSeconds": "1",
                                                                          "resourceVersion": await _rv(api)})
                     for _ in range(5)]
        for resp in responses:
            assert resp.status == 200
            assert await resp.read() == b""  # nothing changed; the server ends it after a second
            resp.release()


async def test_changes_within_one_batch_keep_their_states(api: Api, filled: Synced,
                                                          pool: asyncpg.Pool) -> None:
    target = filled["edge"][2]
    rv = await _rv(api)
    await Store(pool).apply_batch(cluster="edge", rtype=PODS, events=[
        event("MODIFIED", _changed(target, 700, step="one")),
        event("MODIFIED", _changed(target, 701, step="two")),
        event("DELETED", _changed(target, 702, step="two"))])
    async with watching(api, "/clusters/edge/api/v1/pods", resourceVersion=rv) as events:
        got = await next_events(events, 3)
    assert [e["type"] for e in got] == ["MODIFIED", "MODIFIED", "DELETED"]
    assert [e["object"]["metadata"]["labels"]["step"] for e in got] == ["one", "two", "two"]


async def test_the_tail_is_bounded_by_size_and_watches_behind_it_read_the_log(db_url: str, filled: Synced,
                                                                              pool: asyncpg.Pool) -> None:
    bound = 4000  # the JSON of a few pods
    app = build_app(database_url=db_url, access=granted(), feed_tail_bytes=bound)
    async with serving(app) as small:
        rv = await _rv(small)
        names = [f"bulk-{i:02d}" for i in range(30)]
        async with watching(small, "/api/v1/pods", resourceVersion=rv) as early:
            for i, name in enumerate(names):
                await Store(pool).apply_batch(cluster="east", rtype=PODS,
                                              events=[event("ADDED", pod(name, 900 + i, namespace="web"))])
            got = await next_events(early, len(names))
        assert [_who(e) for e in got] == [("ADDED", "east", n) for n in names]
        newest = int(got[-1]["object"]["metadata"]["resourceVersion"])
        feed = app[FEED]
        for _ in range(300):
            if feed.read_upto >= newest:
                break
            await asyncio.sleep(0.1)
        # Everything was read once for every watch, but only the newest changes that fit are kept.
        assert feed.read_upto >= newest
        assert 0 < feed.tail_size <= bound and 0 < len(feed.tail) < len(names)
        assert feed.tail_size == sum(c.size for c in feed.tail) and feed.floor > int(rv)
        # A watch from before the tail's floor gets every change all the same, from the log.
        async with watching(small, "/api/v1/pods", resourceVersion=rv) as late:
            assert [_who(e) for e in await next_events(late, len(names))] == [_who(e) for e in got]


async def test_the_feed_reads_nothing_while_nobody_watches(db_url: str, filled: Synced,
                                                            pool: asyncpg.Pool) -> None:
    """Changes made while no watch follows are not read for the tail; a watch from before
    them gets them all the same, from the log."""
    app = build_app(database_url=db_url, access=granted())
    async with serving(app) as quiet:
        rv = await _rv(quiet)
        names = [f"unwatched-{i}" for i in range(5)]
        for i, name in enumerate(names):
            await Store(pool).apply_batch(cluster="east", rtype=PODS,
                                          events=[event("ADDED", pod(name, 950 + i, namespace="web"))])
        newest = int(await pool.fetchval("SELECT max(seq) FROM change_log"))
        feed = app[FEED]
        for _ in range(300):  # notified, and the notice handled: no tail, not even its horizon
            if feed.latest >= newest and feed.read_upto < 0:
                break
            await asyncio.sleep(0.1)
        assert feed.latest >= newest and feed.read_upto < 0 and not feed.tail and feed.tail_size == 0
        async with watching(quiet, "/api/v1/pods", resourceVersion=rv) as late:
            assert [_who(e) for e in await next_events(late, len(names))] == [
                ("ADDED", "east", n) for n in names]
