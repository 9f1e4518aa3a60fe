"""Syncer fixtures: the real ingest and admin applications on real ports, over a test database."""

from __future__ import annotations

import asyncio
import tempfile
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
from syncer.admin import build_admin_app
from syncer.admission import Limits
from syncer.registry import Kubeconfigs
from syncer.secretbox import SecretBox
from syncer.server import SERVER_SETTINGS, build_app
from tests.serving import serve_app

ADMIN = "admin-secret"


@dataclass
class Ingest:
    url: str
    admin_url: str
    app: web.Application
    session: aiohttp.ClientSession

    async def admin(self, method: str, path: str, body: Any = None,
                    token: str = ADMIN) -> tuple[int, dict[str, Any]]:
        async with self.session.request(method, self.admin_url + path,
                                        data=orjson.dumps(body) if body else None,
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


@asynccontextmanager
async def serving(db_url: str, kubeconfigs: Kubeconfigs | None = None,
                  limits: Limits | None = None) -> AsyncIterator[Ingest]:
    """The ingest application and, after it, the admin application that borrows its pool
    (with a key file of its own unless ``kubeconfigs`` is given)."""
    if kubeconfigs is None:
        with tempfile.TemporaryDirectory(prefix="kubepedia-keys-") as keys:
            key_file = Path(keys) / secretbox.KEY_FILE_NAME
            secretbox.create_key_file(key_file)
            async with serving(db_url, Kubeconfigs(box=SecretBox(key_file)), limits) as served:
                yield served
        return
    app = build_app(database_url=db_url, kubeconfigs=kubeconfigs, limits=limits)
    settings: dict[str, Any] = dict(SERVER_SETTINGS)  # not an ssl_context among them
    runner, url = await serve_app(app, **settings)
    admin_runner, admin_url = await serve_app(build_admin_app(app, admin_token=ADMIN))
    try:
        async with aiohttp.ClientSession() as session:
            yield Ingest(url=url, admin_url=admin_url, app=app, session=session)
    finally:
        await admin_runner.cleanup()
        await runner.cleanup()
        await _handlers_done()


async def _handlers_done() -> None:
    """Let request handlers cancelled by the cleanup finish (one may be discarding the rest of
    a body that was refused before it was read)."""
    while True:
        if not any("RequestHandler.start" in repr(t) for t in asyncio.all_tasks() if not t.done()):
            return
        await asyncio.sleep(0.05)  # at most the server's lingering time


@pytest_asyncio.fixture
async def ingest(db_url: str, key_file: Path) -> AsyncIterator[Ingest]:
    async with serving(db_url, Kubeconfigs(box=SecretBox(key_file))) as served:
        yield served
