"""A read API over a small fleet, served for a whole module from a thread of its own.

Fuzzers (schemathesis, hypothesis over raw sockets) are synchronous: they block the thread
that calls them. The server therefore runs its own event loop in another thread, with its
own database cloned from the session's migrated template, so that blocking clients never
starve it and nothing of it is left on the tests' loop.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from aiohttp import web

from apiserver.app import build_app
from syncer.db import connect, create_pool
from tests.apiserver.conftest import fill
from tests.conftest import TEMPLATE
from tests.serving import serve_app
from tests.syncer.conftest import ingest, key_file  # the ingest listener, for the batch fuzz

__all__ = ["Fuzzed", "fuzzed_api", "ingest", "key_file"]

T = TypeVar("T")
_counter = itertools.count()


@dataclass
class Threaded:
    """An event loop running in a daemon thread; coroutines are run on it to completion."""

    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @classmethod
    def start(cls) -> Threaded:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fuzzed-api", daemon=True)
        thread.start()
        return cls(loop=loop, thread=thread)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@dataclass
class Fuzzed:
    url: str
    database_url: str
    app: web.Application
    threaded: Threaded


def _database_url(server_url: str, name: str) -> str:
    base, _, query = server_url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


async def _create(server_url: str, name: str) -> None:
    conn = await connect(server_url)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    finally:
        await conn.close()


async def _drop(server_url: str, name: str) -> None:
    conn = await connect(server_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


async def _filled(url: str) -> None:
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        await fill(pool, pods_per_namespace=4)
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def fuzzed_api(pg_server_url: str, template_url: str) -> Iterator[Fuzzed]:
    """The read API over three clusters' pods, deployments and nodes, on a real port."""
    del template_url  # requested so that the template exists
    name = f"kp_fuzz_{os.getpid()}_{next(_counter)}"
    threaded = Threaded.start()
    try:
        threaded.run(_create(pg_server_url, name))
        url = _database_url(pg_server_url, name)
        threaded.run(_filled(url))
        app = build_app(database_url=url)
        runner, base = threaded.run(serve_app(app))
        try:
            yield Fuzzed(url=base, database_url=url, app=app, threaded=threaded)
        finally:
            threaded.run(runner.cleanup())
            threaded.run(_drop(pg_server_url, name))
    finally:
        threaded.stop()
