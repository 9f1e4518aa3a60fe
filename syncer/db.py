"""Connections to the store: the asyncpg pool, its codecs, a clear word when it fails, and
how busy the pools are (``POOLS``, read by Prometheus at each scrape)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
JSONB_BINARY_VERSION = b"\x01"

# Per-connection staging for bulk merges: COPY lands here, one statement merges it.
# ON COMMIT DELETE ROWS keeps it empty between transactions at no cost when untouched.
STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS staging (
    ord integer NOT NULL,
    namespace text NOT NULL,
    name text NOT NULL,
    uid text NOT NULL,
    resource_version text NOT NULL,
    owner_uid text,
    labels jsonb NOT NULL,
    created_at timestamptz,
    deleted_at timestamptz,
    object jsonb NOT NULL
) WITH (toast_tuple_target = 8160) ON COMMIT DELETE ROWS
"""
# Change-log entries of one write, numbered by offset until the write draws its numbers
# (the offset picks one: syncer.ingest); version and kind when they differ from the type's.
LOG_STAGING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS log_staging (
    seq bigint NOT NULL,
    version text,
    kind text,
    namespace text NOT NULL,
    name text NOT NULL,
    uid text NOT NULL,
    resource_version text NOT NULL,
    type text NOT NULL,
    object jsonb
) WITH (toast_tuple_target = 8160) ON COMMIT DELETE ROWS
"""
# Objects are copied from staging as stored there: compressed in staging, they would stay
# compressed in the store (see migration 4), so staging keeps them uncompressed too.
STAGING_STORAGE = ("ALTER TABLE staging ALTER COLUMN object SET STORAGE EXTERNAL",
                   "ALTER TABLE log_staging ALTER COLUMN object SET STORAGE EXTERNAL")
STAGING_COLUMNS = ("ord", "namespace", "name", "uid", "resource_version", "owner_uid",
                   "labels", "created_at", "deleted_at", "object")


class DatabaseUnreachable(RuntimeError):
    """The database could not be reached; the message names host and port only."""


def describe(url: str) -> str:
    """``host:port/dbname`` of a URL, never its credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or 5432
    return f"{host}:{port}{parts.path or ''}"


def _encode_jsonb(value: Any) -> bytes:
    # bytes are JSON already encoded (the ingest path encodes each object once, to size it).
    if isinstance(value, bytes):
        return JSONB_BINARY_VERSION + value
    return JSONB_BINARY_VERSION + orjson.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def init_codecs(conn: asyncpg.Connection) -> None:
    """Codecs: orjson, binary jsonb."""
    await conn.set_type_codec("jsonb", schema="pg_catalog", encoder=_encode_jsonb,
                              decoder=_decode_jsonb, format="binary")
    await conn.set_type_codec("json", schema="pg_catalog", encoder=lambda v: orjson.dumps(v).decode(),
                              decoder=orjson.loads, format="text")


async def init_connection(conn: asyncpg.Connection) -> None:
    """Codecs and the session's staging table: what an ingest connection needs."""
    await init_codecs(conn)
    await conn.execute(STAGING_DDL)
    await conn.execute(LOG_STAGING_DDL)
    for statement in STAGING_STORAGE:
        await conn.execute(statement)


async def connect(url: str, *, application_name: str = "kubepedia") -> asyncpg.Connection:
    """One dedicated connection (LISTEN, ownership locks, migrations). The application name
    shows in pg_stat_activity, which tells an operator which process holds which lock."""
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            url, timeout=CONNECT_TIMEOUT_S, server_settings={"application_name": application_name})
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnreachable(_unreachable(url, exc)) from exc
    return conn


def _unreachable(url: str, exc: BaseException) -> str:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # Some driver messages echo the DSN; never let a password through.
    password = urlsplit(url).password
    if password:
        reason = reason.replace(password, "***")
    return f"cannot reach PostgreSQL at {describe(url)}: {reason}"


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a writer's connection needs when it goes back to its pool: nothing beyond what
    asyncpg always does (roll back an open transaction, drop listeners). Writers keep no
    session state on pooled connections (their advisory locks are transaction locks; LISTEN
    and ownership locks have dedicated connections), so the default reset (unlock all,
    close cursors, UNLISTEN, RESET ALL) would be one more round trip after every write
    transaction, made for nothing."""


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10, staging: bool = True,
                      server_settings: dict[str, str] | None = None) -> asyncpg.Pool:
    """A pool whose connections have our codecs; ``staging`` adds the ingest staging table
    (only writers need it), and returns connections to the pool without the reset query
    (``_keep_session``)."""
    try:
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size,
                                         init=init_connection if staging else init_codecs,
                                         reset=_keep_session if staging else None,
                                         timeout=CONNECT_TIMEOUT_S, server_settings=server_settings)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnreachable(_unreachable(url, exc)) from exc
    assert pool is not None
    return pool


@asynccontextmanager
async def pool_context(url: str, *, min_size: int = 2, max_size: int = 10,
                       server_settings: dict[str, str] | None = None) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(url, min_size=min_size, max_size=max_size, server_settings=server_settings)
    try:
        yield pool
    finally:
        await pool.close()


# -- connection pools ------------------------------------------------------------------------

class PoolUsage(Collector):
    """The connections of every pool of the process, by the pool's role, read when scraped
    (asyncpg counts them itself: nothing to keep up to date)."""

    def __init__(self) -> None:
        self._pools: dict[int, tuple[str, asyncpg.Pool]] = {}

    @contextlib.contextmanager
    def watching(self, name: str, pool: asyncpg.Pool) -> Iterator[None]:
        self._pools[id(pool)] = (name, pool)
        try:
            yield
        finally:
            self._pools.pop(id(pool), None)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        used: dict[str, list[int]] = {}
        for name, pool in list(self._pools.values()):
            # Several pools of one role (tests run several applications) add up.
            size, idle, most = pool.get_size(), pool.get_idle_size(), pool.get_max_size()
            totals = used.setdefault(name, [0, 0, 0])
            totals[0] += size - idle
            totals[1] += idle
            totals[2] += most
        connections = GaugeMetricFamily("kubepedia_db_pool_connections",
                                        "Open connections of a pool, in use or idle",
                                        labels=["pool", "state"])
        limit = GaugeMetricFamily("kubepedia_db_pool_max_connections", "The most connections a pool opens",
                                  labels=["pool"])
        for name, (in_use, idle, most) in sorted(used.items()):
            connections.add_metric([name, "in_use"], in_use)
            connections.add_metric([name, "idle"], idle)
            limit.add_metric([name], most)
        return [connections, limit]

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # collected at each scrape; nothing to check at registration


POOLS = PoolUsage()
REGISTRY.register(POOLS)
