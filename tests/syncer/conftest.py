"""Syncer fixtures: the real ingest application on a real port, over a test database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest_asyncio
from aiohttp import web

from syncer.server import build_app

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


@pytest_asyncio.fixture
async def ingest(db_url: str) -> AsyncIterator[Ingest]:
    app = build_app(database_url=db_url, admin_token=ADMIN)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as session:
        yield Ingest(url=f"http://127.0.0.1:{port}", app=app, session=session)
    await runner.cleanup()
