"""The change feed: one LISTEN connection and one reader of the change log per API process.

Writers NOTIFY the newest sequence number at commit (syncer.ingest); the payload is only
that number, never an object (NOTIFY payloads are small), and only a wake-up: numbers
commit out of order, so what is read is bounded by the change-log horizon
(``apiserver.horizon``), read first, and the tail then reaches the horizon, not its last
row. On each notification one task reads the new changes once, for every watch of this
process, into an in-memory tail
bounded by a count of changes and by the size of the JSON they hold (objects reach
1.5 MiB, so a count alone could hold gigabytes); the oldest are dropped first. Each watch
filters the tail in memory. A watch that is behind the tail (it started
from an older resourceVersion, or could not keep up) reads the change log itself until
it catches up. A lost connection is re-made, and every watch is woken to re-read, so
nothing is missed while it was down.

While no watch follows the feed, nothing is read, not even the horizon: the tail is
dropped (every watch reads the log itself meanwhile) and starts anew at the horizon on the
first notification a watch is there for. Reading every change cost the server about 170 us of CPU a change
(each object annotated and turned into text twice), on the store's busiest moments (an
initial sync writes thousands of changes a second) and for every API process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from apiserver import horizon
from apiserver.query import EVERYTHING_SCOPE, compiled, watch_statement
from apiserver.replicas import ReadPools
from kube.changes import ChangeType
from kube.tasks import STOP_TIMEOUT_S, stop_tasks
from syncer.db import connect
from syncer.schema import NOTIFY_CHANNEL
from syncer.store_app import POOL

log = logging.getLogger(__name__)

RECONNECT_S = 1.0
TAIL_MAX = 20_000  # changes kept in memory for the watches of this process
TAIL_BYTES = 64 * 1024 * 1024  # and the JSON text they hold, at most
READ_BATCH = 1000
POLL_S = 0.1  # a replica's feed reads this often: a standby takes no LISTEN


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One change-log entry as watches read it, with the states before and after it
    (annotated JSON text)."""

    seq: int
    type: ChangeType
    cluster: str
    group: str
    version: str
    resource: str
    namespace: str
    name: str
    before: str | None
    after: str | None
    size: int  # characters of JSON text held (bytes, for the ASCII that PostgreSQL's JSON mostly is)

    @classmethod
    def of(cls, row: asyncpg.Record) -> LogEntry:
        before, after = row["before"], row["after"]
        return cls(row["seq"], row["type"], row["cluster"], row["grp"], row["version"], row["resource"],
                   row["namespace"], row["name"], before, after, len(before or "") + len(after or ""))


class ChangeFeed:
    """See the module docstring. ``floor < seq <= read_upto`` is what the tail holds whole."""

    def __init__(self, database_url: str, *, tail_max: int = TAIL_MAX, tail_bytes: int = TAIL_BYTES,
                 poll_s: float | None = None) -> None:
        self._url = database_url
        self._poll_s = poll_s
        self._tail_max = tail_max
        self._tail_bytes = tail_bytes
        self._changed = asyncio.Event()
        self._notified = asyncio.Event()
        self.latest = 0  # the newest sequence notified (a wake-up hint: it may still be in flight)
        self.tail: deque[LogEntry] = deque()
        self.tail_size = 0  # the sum of the tail's LogEntry.size
        self.floor = -1  # no tail yet: every watch reads the change log itself
        self.read_upto = -1
        self.closed = False
        self.followers = 0  # watches following the feed (``following``)

    def close(self) -> None:
        """The server is shutting down: wake every watch so that it ends."""
        self.closed = True
        self._wake()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.isdigit():
            self.latest = max(self.latest, int(payload))
        self._notified.set()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        """Held by a watch while it follows the feed: the feed reads only while one does."""
        self.followers += 1
        try:
            yield
        finally:
            self.followers -= 1

    def ticket(self) -> asyncio.Event:
        """Taken before reading: set by the next change, even one during the read."""
        return self._changed

    @staticmethod
    async def wait(ticket: asyncio.Event, seconds: float) -> None:
        """Until the tail grows (or the feed restarts) after ``ticket`` was taken, or
        ``seconds`` pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await ticket.wait()

    def since(self, seq: int) -> list[LogEntry] | None:
        """The changes after ``seq`` from the tail, or None when the tail does not reach back."""
        if seq < self.floor or self.floor < 0:
            return None
        # From the newest back: a watch that keeps up looks at its few new changes only,
        # not at the whole tail on every wake-up.
        newer: list[LogEntry] = []
        for c in reversed(self.tail):
            if c.seq <= seq:
                break
            newer.append(c)
        newer.reverse()
        return newer

    def _append(self, rows: list[LogEntry]) -> None:
        """Add ``rows`` to the tail and drop the oldest beyond its bounds; a watch from before
        the new floor reads the change log itself (``since`` answers None)."""
        self.tail.extend(rows)
        self.tail_size += sum(c.size for c in rows)
        while self.tail and (len(self.tail) > self._tail_max or self.tail_size > self._tail_bytes):
            dropped = self.tail.popleft()
            self.tail_size -= dropped.size
            self.floor = dropped.seq

    def _drop(self) -> None:
        """No tail: every watch reads the change log itself (``since`` answers None) until
        the tail starts anew (``_restart``)."""
        self.tail.clear()
        self.tail_size = 0
        self.floor = self.read_upto = -1

    async def _restart(self, pool: asyncpg.Pool) -> None:
        """Start the tail anew at the horizon: everything up to it has ended; a watch from
        before it reads the log."""
        self._drop()
        self.floor = self.read_upto = await horizon.horizon(pool)

    async def _read(self, pool: asyncpg.Pool) -> None:
        """Append what was committed since the last read, up to the horizon, to the tail,
        once for all watches."""
        if not self.followers:
            self._drop()
            return
        if self.floor < 0:
            await self._restart(pool)
            return
        while True:
            upto = await horizon.horizon(pool)  # before the read's snapshot, in its own statement
            sql, params = compiled(watch_statement(None, EVERYTHING_SCOPE, after=self.read_upto, upto=upto,
                                                   limit=READ_BATCH))
            rows = [LogEntry.of(r) for r in await pool.fetch(sql, *params)]
            self._append(rows)
            self.read_upto = rows[-1].seq if rows else self.read_upto
            if len(rows) < READ_BATCH:
                self.read_upto = max(self.read_upto, upto)
                return

    async def _reader(self, pool: asyncpg.Pool) -> None:
        """Returns (ending the connection's round) when the change log cannot be read."""
        await self._restart(pool)
        while True:
            await self._notified.wait()
            self._notified.clear()
            await self._read(pool)
            self._wake()

    async def run(self, pick: Callable[[], asyncpg.Pool]) -> None:
        """Keep the feed's round going (after losing one, start the tail anew): LISTEN on
        the primary, or, with read replicas (``poll_s``), poll the published horizon on the
        replica ``pick`` gives: a standby refuses LISTEN, and NOTIFY is not replicated."""
        while True:
            pool = pick()
            try:
                if self._poll_s is None:
                    await self._listening(pool)
                else:
                    await self._polling(pool, self._poll_s)
            except Exception as exc:  # any failure: start the tail anew, watches read the log
                log.warning("watch feed interrupted; reconnecting", extra={"error": str(exc)})
            self.tail.clear()
            self.tail_size = 0
            self.floor = self.read_upto = -1  # notifications were missed: watches read the log
            self._wake()
            await asyncio.sleep(RECONNECT_S)

    async def _listening(self, pool: asyncpg.Pool) -> None:
        try:
            conn = await connect(self._url, application_name="kubepedia-api-watch")
        except Exception as exc:  # unreachable store: keep trying, watches read the log
            log.warning("watch feed cannot connect", extra={"error": str(exc)})
            return
        try:
            await self._round(conn, pool)
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    async def _polling(self, pool: asyncpg.Pool, poll_s: float) -> None:
        """Read every ``poll_s`` (the delay a watch on a replica sees, beyond replication
        and the publisher's own): each read starts with the horizon, which is the published
        one on a standby (``apiserver.horizon``)."""
        reader = asyncio.create_task(self._reader(pool), name="watch feed reader")
        try:
            while not reader.done():
                self._notified.set()
                await asyncio.wait({reader}, timeout=poll_s)
        finally:
            await stop_tasks([reader], timeout=STOP_TIMEOUT_S, log=log)
        if not reader.cancelled() and reader.exception() is not None:
            raise reader.exception()  # type: ignore[misc]

    async def _round(self, conn: asyncpg.Connection, pool: asyncpg.Pool) -> None:
        """Listen and read until the connection is lost or the reader fails."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
        reader = asyncio.create_task(self._reader(pool), name="watch feed reader")
        waiting = asyncio.create_task(lost.wait())
        try:
            await asyncio.wait({reader, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await stop_tasks([reader, waiting], timeout=STOP_TIMEOUT_S, log=log)
        if reader.done() and not reader.cancelled() and reader.exception() is not None:
            raise reader.exception()  # type: ignore[misc]

    @staticmethod
    def context(database_url: str, key: web.AppKey[ChangeFeed], *, tail_bytes: int = TAIL_BYTES,
                reads: web.AppKey[ReadPools] | None = None,
                poll_s: float = POLL_S) -> Callable[[web.Application], AsyncIterator[None]]:
        """The feed of an application (after its pools): with ``reads`` holding replicas, it
        reads from them, polling; else from the application's pool, woken by NOTIFY."""
        async def ctx(app: web.Application) -> AsyncIterator[None]:
            pools = app.get(reads) if reads is not None else None
            polled = pools is not None and bool(pools.replicas)
            feed = ChangeFeed(database_url, tail_bytes=tail_bytes, poll_s=poll_s if polled else None)
            app[key] = feed

            async def shutting_down(_app: web.Application) -> None:
                feed.close()

            # Before connections are closed, so that watch handlers end by themselves.
            app.on_shutdown.append(shutting_down)
            pick = pools.pick if pools is not None and polled else (lambda: app[POOL])
            task = asyncio.create_task(feed.run(pick), name="watch feed")
            try:
                yield
            finally:
                await stop_tasks([task], timeout=STOP_TIMEOUT_S, log=log)

        return ctx
