"""The read API on a hot standby (``--read-database-url``; docs/replicas.md): lists and
watches see what was written to the primary, and a continue token minted on a fresher
server is never answered from an older snapshot."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from apiserver.app import build_app
from syncer.db import connect, create_pool
from syncer.ingest import Store
from syncer.migrations import migrate
from syncer.published import publish_forever
from tests.access import granted
from tests.apiserver.conftest import Api, next_events, serving, watching
from tests.factories import PODS, event, pod
from tests.replicas import Pair, primary_and_standby

WEST = "/api/v1/namespaces/lag/pods"  # the tests share the pair's database


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with primary_and_standby() as made:
        yield made


@contextlib.asynccontextmanager
async def _primary(pair: Pair) -> AsyncIterator[tuple[Store, asyncpg.Pool]]:
    """The primary's store, with the horizon published as the syncer publishes it."""
    conn = await connect(pair.primary)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    pool = await create_pool(pair.primary, max_size=4)
    publisher = asyncio.create_task(publish_forever(pool))
    try:
        yield Store(pool), pool
    finally:
        publisher.cancel()
        await asyncio.gather(publisher, return_exceptions=True)
        await pool.close()


async def _names(api: Api, want: set[str], path: str = "/api/v1/pods") -> dict[str, object]:
    async with asyncio.timeout(30):
        while True:
            status, body = await api.get(path)
            assert status == 200
            if {i["metadata"]["name"] for i in body["items"]} >= want:
                return dict(body["metadata"])
            await asyncio.sleep(0.1)


async def test_lists_and_watches_on_a_standby(pair: Pair) -> None:
    async with _primary(pair) as (store, _pool):
        await store.apply_batch(cluster="east", rtype=PODS, events=[event("ADDED", pod("first", 1))])
        app = build_app(database_url=pair.primary, access=granted(), read_database_urls=[pair.standby])
        async with serving(app) as api:
            meta = await _names(api, {"first"})
            on_standby = await asyncpg.connect(pair.standby)
            try:
                published = await on_standby.fetchval("SELECT horizon FROM change_log_published")
                assert int(str(meta["resourceVersion"])) <= published, "a version past the standby's"
            finally:
                await on_standby.close()
            async with watching(api, "/api/v1/pods", resourceVersion=str(meta["resourceVersion"])) as watch:
                await store.apply_batch(cluster="east", rtype=PODS,
                                        events=[event("ADDED", pod("second", 2))])
                (got,) = await next_events(watch, 1)
                if got["object"]["metadata"]["name"] == "first":
                    # A list's version is the horizon read before its snapshot, which may already
                    # hold a change above it: the watch may send it again, never skip one
                    # (docs/design.md, "Sequence numbers and the horizon").
                    (got,) = await next_events(watch, 1)
            assert (got["type"], got["object"]["metadata"]["name"]) == ("ADDED", "second")


def _lagging(prefix: str, rv: int) -> list[dict[str, object]]:
    return [event("ADDED", pod(f"{prefix}{i}", rv + i, namespace="lag")) for i in range(3)]


async def test_a_lagging_standby_never_answers_a_newer_token(pair: Pair) -> None:
    async with _primary(pair) as (store, _pool):
        await store.apply_batch(cluster="west", rtype=PODS,
                                events=_lagging("p", 10))
        standby = await asyncpg.connect(pair.standby)
        on_standby = build_app(database_url=pair.primary, access=granted(), read_database_urls=[pair.standby])
        on_primary = build_app(database_url=pair.primary, access=granted())
        async with serving(on_primary) as fresh, serving(on_standby) as lagging:
            try:
                await _names(lagging, {"p0", "p1", "p2"}, WEST)
                await standby.execute("SELECT pg_wal_replay_pause()")
                await store.apply_batch(cluster="west", rtype=PODS,
                                        events=_lagging("q", 20))
                status, first = await fresh.get(WEST, limit="2")
                token = first["metadata"]["continue"]
                status, body, resp = await lagging.request("GET", WEST,
                                                           params={"limit": "2", "continue": token})
                assert status == 504, "a page was answered from a snapshot older than its token"
                assert body["reason"] == "Timeout" and resp.headers["Retry-After"] == "1"
                assert body["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
                rv = first["metadata"]["resourceVersion"]
                status, body, _ = await lagging.request("GET", WEST,
                                                        params={"watch": "1", "resourceVersion": rv})
                assert status == 504, "a watch started from a state older than its version"
                await standby.execute("SELECT pg_wal_replay_resume()")
                status, page = await lagging.get(WEST, limit="2", **{"continue": token})
                assert status == 200
                names = [i["metadata"]["name"] for i in first["items"] + page["items"]]
                assert names == ["p0", "p1", "p2", "q0"]
            finally:
                with contextlib.suppress(asyncpg.PostgresError):
                    await standby.execute("SELECT pg_wal_replay_resume()")
                await standby.close()
