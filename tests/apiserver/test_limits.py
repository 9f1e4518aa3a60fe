"""The read API's limits, each answered with its Kubernetes code (apiserver.limits): open
watches per subject (429, the slot freed when a watch ends), the statement timeout (504, the
pool usable afterwards), and ``limit`` capped as Kubernetes allows."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg

from apiserver.app import build_app
from apiserver.keys import POOL, WATCHES
from apiserver.limits import ANONYMOUS, pool_settings
from apiserver.params import MAX_LIMIT, list_options
from syncer.db import connect
from syncer.ingest import Store
from tests.apiserver.conftest import node, serving, watching
from tests.factories import NODES, event

Synced = dict[str, list[dict[str, Any]]]


def _is_status(body: Any, code: int, reason: str) -> None:
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert (body["code"], body["reason"]) == (code, reason), body


async def _until_open(app: Any, count: int) -> None:
    """Until the app counts ``count`` open watches (bounded: a watch that never lets go fails)."""
    for _ in range(300):
        if app[WATCHES].open(ANONYMOUS) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{app[WATCHES].open(ANONYMOUS)} watches open, expected {count}")


async def test_a_watch_beyond_the_subjects_bound_is_429_and_a_slot_frees_when_one_ends(
        db_url: str, filled: Synced) -> None:
    app = build_app(database_url=db_url, max_watches_per_subject=2)
    async with serving(app) as api, watching(api, "/api/v1/pods"), watching(api, "/api/v1/nodes"):
        await _until_open(app, 2)
        status, body, resp = await api.request("GET", "/api/v1/pods", params={"watch": "1"})
        assert status == 429
        _is_status(body, 429, "TooManyRequests")
        assert resp.headers["Retry-After"] == "1" and body["details"]["retryAfterSeconds"] == 1
        # Lists are not watches: they are still served.
        status, _ = await api.get("/api/v1/pods", limit="1")
        assert status == 200
    await _until_open(app, 0)


async def test_a_watch_that_times_out_gives_its_slot_back(db_url: str, filled: Synced) -> None:
    app = build_app(database_url=db_url, max_watches_per_subject=1)
    async with serving(app) as api:
        for _ in range(2):  # the second would be 429 if the first kept its slot
            async with api.session.get(api.url + "/api/v1/pods",
                                       params={"watch": "1", "timeoutSeconds": "1"}) as resp:
                assert resp.status == 200
                await resp.read()  # ends when the watch's timeout does
            await _until_open(app, 0)


async def test_a_watch_whose_client_left_gives_its_slot_back(db_url: str, filled: Synced,
                                                             pool: asyncpg.Pool) -> None:
    app = build_app(database_url=db_url, max_watches_per_subject=1)
    async with serving(app) as api:
        _, listed = await api.get("/api/v1/pods", limit="1")
        # From the list's version: no initial events, nothing written until a pod changes.
        async with watching(api, "/api/v1/pods", resourceVersion=listed["metadata"]["resourceVersion"]):
            await _until_open(app, 1)
        # The client is gone; a change elsewhere (a node: nothing this watch would write)
        # wakes the watch, which must notice and end.
        await Store(pool).apply_batch(cluster="east", rtype=NODES, events=[event("ADDED", node("late", 77))])
        await _until_open(app, 0)
        async with watching(api, "/api/v1/pods"):
            await _until_open(app, 1)


async def test_a_query_past_the_statement_timeout_is_504_and_the_pool_recovers(
        db_url: str, filled: Synced) -> None:
    app = build_app(database_url=db_url, read_timeout_s=0.2)
    async with serving(app) as api:
        status, _ = await api.get("/api/v1/pods", limit="5")  # the pool is up, the catalog read
        assert status == 200
        locker = await connect(db_url)
        try:
            async with locker.transaction():
                # A second connection holds the table: every read of it waits, until the
                # statement timeout cancels it.
                await locker.execute("LOCK TABLE resources IN ACCESS EXCLUSIVE MODE")
                for params in ({"limit": "5"}, {}):  # a page, and a streamed list before it begins
                    # Bounded, so that a server without the timeout fails here instead of hanging.
                    status, body = await asyncio.wait_for(api.get("/api/v1/pods", **params), 60)
                    assert status == 504, body
                    _is_status(body, 504, "Timeout")
        finally:
            await locker.close()
        for _ in range(12):  # more than the pool's connections: each one is usable again
            status, body = await api.get("/api/v1/pods", limit="5")
            assert status == 200 and len(body["items"]) == 5


def test_the_statement_timeout_is_whole_milliseconds_never_zero() -> None:
    assert pool_settings(30.0) == {"statement_timeout": "30000"}
    assert pool_settings(0.0001) == {"statement_timeout": "1"}  # 0 would mean no timeout at all


async def test_the_statement_timeout_is_set_on_the_api_pool(db_url: str) -> None:
    app = build_app(database_url=db_url, read_timeout_s=12.5)
    async with serving(app) as api:
        assert api.url
        assert await app[POOL].fetchval("SHOW statement_timeout") == "12500ms"


def test_a_large_limit_is_capped_as_kubernetes_allows_not_refused() -> None:
    assert list_options({"limit": str(10 * MAX_LIMIT)}, "").limit == MAX_LIMIT
    assert list_options({"limit": "999999999999"}, "").limit == MAX_LIMIT
    assert list_options({"limit": "7"}, "").limit == 7


async def test_a_limit_over_the_maximum_pages_with_a_continue_token(db_url: str, filled: Synced,
                                                                    monkeypatch: Any) -> None:
    total = sum(len(p) for p in filled.values())
    monkeypatch.setattr("apiserver.params.MAX_LIMIT", 10)  # a small maximum, to page a small fleet
    async with serving(build_app(database_url=db_url)) as api:
        seen: list[str] = []
        params = {"limit": str(10**9)}
        while True:
            status, body = await api.get("/api/v1/pods", **params)
            assert status == 200 and len(body["items"]) <= 10
            seen += [i["metadata"]["uid"] for i in body["items"]]
            token = body["metadata"].get("continue")
            if not token:
                break
            params = {"limit": str(10**9), "continue": token}
    assert len(seen) == total == len(set(seen))


async def test_an_aiohttp_session_still_works_after_a_refused_watch(db_url: str, filled: Synced) -> None:
    # A 429 is a whole response (not a broken stream): the connection is reused.
    app = build_app(database_url=db_url, max_watches_per_subject=1)
    async with serving(app) as api, watching(api, "/api/v1/pods"):
        await _until_open(app, 1)
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as one:
            for _ in range(3):
                async with one.get(api.url + "/api/v1/pods", params={"watch": "1"}) as resp:
                    assert resp.status == 429
                    await resp.read()
