"""Syncer fixtures: the real ingest application on a real port, over a test database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest_asyncio
from aiohttp import web

from syncer.server import GATE, build_app

ADMIN = "admin-secret"


@dataclass
class Ingest:
    url: str
    app: web.Application
    session: aiohttp.ClientSession

    async def admin(self, method: str, path: str, body: Any = None,
                    token: str = ADMIN) -> tuple[int, dict[str, Any]]:
        async with self.session.request(method, self.url + path, data=orjson.dumps(body) if body else None,
                                        headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status, orjson.loads(await resp.read())

    async def register_push(self, name: str, **settings: Any) -> str:
        status, body = await self.admin("POST", "/admin/v1/clusters",
                                        {"name": name, "mode": "push", "settings": settings})
        assert status == 201, body
        token: str = body["token"]
        return token


@asynccontextmanager
async def running_ingest(db_url: str, *, write_slots: int | None = None) -> AsyncIterator[Ingest]:
    """The ingest application on a port of its own; ``write_slots`` narrows its admission
    gate, so that a few transactions held up in PostgreSQL fill it."""
    app = build_app(database_url=db_url, admin_token=ADMIN)
    if write_slots is not None:
        app[GATE] = asyncio.Semaphore(write_slots)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        try:
            yield Ingest(url=f"http://127.0.0.1:{port}", app=app, session=session)
        finally:
            await runner.cleanup()


@pytest_asyncio.fixture
async def ingest(db_url: str) -> AsyncIterator[Ingest]:
    async with running_ingest(db_url) as served:
        yield served
