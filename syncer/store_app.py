"""The store as an aiohttp resource: a pool per application and store-backed health checks.

Shared by the ingest listener and the read API, each of which owns its own pool so that
heavy reads never starve ingest of connections.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import asyncpg
from aiohttp import web

from syncer.db import POOLS, pool_context

log = logging.getLogger(__name__)

POOL = web.AppKey("pool", asyncpg.Pool)


def pool_ctx(url: str, *, max_size: int,
             name: str = "ingest") -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context owning one asyncpg pool for an application; its use is in
    ``kubepedia_db_pool_connections{pool=name}``."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with pool_context(url, max_size=max_size) as pool:
            app[POOL] = pool
            with POOLS.watching(name, pool):
                yield

    return ctx


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the store answers. Why it does not is logged, not answered: the reason can
    name hosts, users and databases, and this endpoint needs no credentials."""
    try:
        await request.app[POOL].fetchval("SELECT 1")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("not ready: the store does not answer", extra={"error": str(exc)})
        return web.json_response({"status": "unavailable", "reason": "the store does not answer"},
                                 status=503)
    return web.json_response({"status": "ok"})


def health_routes() -> list[web.RouteDef]:
    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]
