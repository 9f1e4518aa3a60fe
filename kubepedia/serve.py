"""``kubepedia serve``: the syncer's ingest and admin listeners and the read API in one process."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from apiserver.app import build_app as build_api_app
from kubepedia.config import ensure_admin_token
from syncer import embedded
from syncer.admin import build_admin_app
from syncer.db import connect, describe
from syncer.migrations import migrate
from syncer.server import SERVER_SETTINGS as INGEST_SERVER_SETTINGS
from syncer.server import build_app as build_ingest_app

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class ServeConfig:
    database_url: str | None
    data_dir: Path
    api_listen: tuple[str, int]
    ingest_listen: tuple[str, int]
    admin_listen: tuple[str, int]


@asynccontextmanager
async def database(config: ServeConfig) -> AsyncIterator[str]:
    """The database URL to use, running the embedded server when none is given."""
    if config.database_url:
        yield config.database_url
        return
    async with embedded.running(config.data_dir) as pg:
        yield pg.url


async def prepare_schema(url: str) -> None:
    conn = await connect(url)
    try:
        before = await migrate(conn)
    finally:
        await conn.close()
    log.info("store ready", extra={"database": describe(url), "schema_was": before})


async def _start_site(stack: AsyncExitStack, app: web.Application, listen: tuple[str, int],
                      what: str, **settings: Any) -> None:
    runner = web.AppRunner(app, handle_signals=False, **settings)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, listen[0], listen[1])
    await site.start()
    log.info("listening", extra={"listener": what, "address": f"{listen[0]}:{listen[1]}"})


async def serve(config: ServeConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with database(config) as url, AsyncExitStack() as stack:
        await prepare_schema(url)
        ingest = build_ingest_app(database_url=url)
        await _start_site(stack, ingest, config.ingest_listen, "ingest", **INGEST_SERVER_SETTINGS)
        # After the ingest application, whose pool and pull manager it shares.
        admin = build_admin_app(ingest, admin_token=ensure_admin_token(config.data_dir))
        await _start_site(stack, admin, config.admin_listen, "admin")
        await _start_site(stack, build_api_app(database_url=url), config.api_listen, "api")
        await stop.wait()
        log.info("shutting down")
