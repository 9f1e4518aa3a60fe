"""``kubepedia serve`` stopped by SIGTERM: watches end with a last bookmark, an ingest batch
in flight commits, and the process exits 0. (A restart resuming without a relist is
tests/e2e/test_resume.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from agent.events import WatchEvent
from agent.push import HttpSink
from tests.e2e.procs import Server, cleanup, register, start_server
from tests.factories import PODS, pod


async def _watch(session: aiohttp.ClientSession, url: str, events: list[dict[str, Any]],
                 opened: asyncio.Event, **params: str) -> None:
    """Read a watch to its end; a broken end (not a clean end of the chunked body) raises."""
    async with session.get(url, params={"watch": "1", **params}) as resp:
        assert resp.status == 200
        opened.set()
        buffer = b""
        async for chunk in resp.content.iter_any():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            events.extend(orjson.loads(line) for line in lines)
        assert buffer == b""


@contextlib.asynccontextmanager
async def _row_locked(db_url: str, cluster: str) -> AsyncIterator[asyncpg.Connection]:
    """The cluster's pods sync state locked, as a writer of that type locks it."""
    conn = await asyncpg.connect(db_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT 1 FROM sync_state WHERE cluster = $1 AND resource = 'pods'"
                               " FOR UPDATE", cluster)
            yield conn
    finally:
        await conn.close()


async def _until(check: Any, what: str) -> None:
    """Poll another process's state (nothing to await) with a deadline, not an expectation."""
    try:
        async with asyncio.timeout(60):
            while not await check():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"never: {what}") from None


async def _logged(server: Server, line: str) -> bool:
    return line in server.proc.run_output()


async def test_sigterm_ends_watches_with_a_bookmark_and_lets_a_batch_commit(
        tmp_path: Path, db_url: str, pool: asyncpg.Pool) -> None:
    server: Server = await start_server(tmp_path, "syncer", database_url=db_url)
    async with cleanup(server.proc), server.api_client() as session:
        token = await register(server, "edge")
        assert token is not None
        async with HttpSink(base_url=server.ingest, cluster="edge", token=token) as sink:
            snapshot = await sink.snapshot_start(PODS)
            await sink.snapshot_page(PODS, snapshot, [pod("a", 1)])
            await sink.snapshot_end(PODS, snapshot, resource_version="1", count=1)
            async with session.get(server.api + "/api/v1/pods") as resp:
                listed = (await resp.json())["metadata"]["resourceVersion"]
            with_bookmarks: list[dict[str, Any]] = []
            plain: list[dict[str, Any]] = []
            opened = [asyncio.Event(), asyncio.Event()]
            url = server.api + "/api/v1/pods"
            watches = [asyncio.create_task(_watch(session, url, with_bookmarks, opened[0],
                                                  resourceVersion=listed, allowWatchBookmarks="true")),
                       asyncio.create_task(_watch(session, url, plain, opened[1], resourceVersion=listed))]
            for event in opened:
                await asyncio.wait_for(event.wait(), 30)
            async with _row_locked(db_url, "edge"):
                batch = asyncio.create_task(sink.changes(
                    PODS, [WatchEvent(type="MODIFIED", object=pod("a", 2))], resource_version="2",
                    after="1"))
                await _until(lambda: pool.fetchval(
                    "SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE '%sync_state%'"), "the batch waits for the lock")
                assert server.proc.proc is not None
                server.proc.proc.send_signal(signal.SIGTERM)
                await _until(lambda: _logged(server, "shutting down"), "the server is shutting down")
            await asyncio.wait_for(batch, 60)  # answered: the batch was not cut short
            await asyncio.wait_for(asyncio.gather(*watches), 60)  # both ended cleanly
        assert await asyncio.wait_for(server.proc.proc.wait(), 60) == 0
    stored = await pool.fetchval("SELECT resource_version FROM resources WHERE cluster = $1 AND name = $2",
                                 "edge", "a")
    assert stored == "2"
    newest = await pool.fetchval("SELECT max(seq) FROM change_log")
    # The change committed during the shutdown reached both watches, then the one that
    # takes bookmarks got one at the newest sequence; the other ended without one.
    assert [e["type"] for e in with_bookmarks] == ["MODIFIED", "BOOKMARK"], with_bookmarks
    assert with_bookmarks[-1]["object"]["metadata"]["resourceVersion"] == str(newest)
    assert [e["type"] for e in plain] == ["MODIFIED"], plain
