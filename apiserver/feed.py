"""The change feed: one LISTEN connection per API process that wakes every open watch.

Writers NOTIFY the newest sequence number at commit (syncer.ingest); the payload is only
that number, never an object (NOTIFY payloads are small). A lost connection is re-made,
and every watch is woken to re-read, so nothing is missed while it was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from syncer.db import connect
from syncer.schema import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

RECONNECT_S = 1.0


class ChangeFeed:
    """One LISTEN connection per process; every open watch waits on it."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._changed = asyncio.Event()
        self.latest = 0
        self.closed = False

    def close(self) -> None:
        """The server is shutting down: wake every watch so that it ends."""
        self.closed = True
        self._wake()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.isdigit():
            self.latest = max(self.latest, int(payload))
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        """Until the next commit lands, or ``seconds`` pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._changed.wait()

    async def run(self) -> None:
        """Keep the LISTEN connection; after losing it, wake every watch to re-read."""
        while True:
            try:
                conn = await connect(self._url, application_name="kubepedia-api-watch")
            except Exception as exc:  # unreachable store: keep trying, watches keep waiting
                log.warning("watch feed cannot connect", extra={"error": str(exc)})
                await asyncio.sleep(RECONNECT_S)
                continue
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            try:
                await conn.add_listener(NOTIFY_CHANNEL, self._notified)
                self._wake()
                await lost.wait()
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
            log.warning("watch feed lost its connection; reconnecting")
            self._wake()
            await asyncio.sleep(RECONNECT_S)

    @staticmethod
    def context(database_url: str,
                key: web.AppKey[ChangeFeed]) -> Callable[[web.Application], AsyncIterator[None]]:
        async def ctx(app: web.Application) -> AsyncIterator[None]:
            feed = ChangeFeed(database_url)
            app[key] = feed

            async def shutting_down(_app: web.Application) -> None:
                feed.close()

            # Before connections are closed, so that watch handlers end by themselves.
            app.on_shutdown.append(shutting_down)
            task = asyncio.create_task(feed.run(), name="watch feed")
            try:
                yield
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        return ctx
