"""Syncer fixtures: the real ingest application on a real port, over a test database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from syncer import secretbox
from syncer.registry import Kubeconfigs
from syncer.secretbox import SecretBox
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


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """The ingest app's key file (0600, one key), as ``kubepedia serve`` creates it."""
    path = tmp_path / "keys" / secretbox.KEY_FILE_NAME
    secretbox.create_key_file(path)
    return path


@pytest_asyncio.fixture
async def ingest(db_url: str, key_file: Path) -> AsyncIterator[Ingest]:
    async with serving(db_url, Kubeconfigs(box=SecretBox(key_file))) as running:
        yield running


@asynccontextmanager
async def serving(db_url: str, kubeconfigs: Kubeconfigs) -> AsyncIterator[Ingest]:
    """The ingest application on a free loopback port, until the context ends."""
    app = build_app(database_url=db_url, admin_token=ADMIN, kubeconfigs=kubeconfigs)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            yield Ingest(url=f"http://127.0.0.1:{port}", app=app, session=session)
    finally:
        await runner.cleanup()
