"""``kubepedia serve``: the syncer's ingest listener and the read API in one process."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from apiserver.app import build_app as build_api_app
from kubepedia.config import ensure_admin_token
from syncer import embedded
from syncer.db import connect, describe
from syncer.migrations import migrate
from syncer.server import build_app as build_ingest_app

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class ServeConfig:
    database_url: str | None
    data_dir: Path
    api_listen: tuple[str, int]
    ingest_listen: tuple[str, int]


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
                      what: str) -> None:
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, listen[0], listen[1])
    await site.start()
    # The bound addresses, not the requested ones: with port 0 the kernel picks the port,
    # and this line is how a caller (tests, scripts) learns it.
    for address in runner.addresses:
        log.info("listening", extra={"listener": what, "address": _host_port(address)})


def _host_port(address: tuple[str, int] | tuple[str, int, int, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve(config: ServeConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with database(config) as url, AsyncExitStack() as stack:
        await prepare_schema(url)
        ingest = build_ingest_app(database_url=url, admin_token=ensure_admin_token(config.data_dir))
        await _start_site(stack, ingest, config.ingest_listen, "ingest")
        await _start_site(stack, build_api_app(database_url=url), config.api_listen, "api")
        await stop.wait()
        log.info("shutting down")
