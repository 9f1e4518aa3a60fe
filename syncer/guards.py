"""Conditions every write transaction checks before it writes: that the cluster is still
registered, and (pull mode) that this process still owns it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import asyncpg


class FenceLost(RuntimeError):
    """This writer may no longer write the cluster: it was removed, or another syncer took
    it over."""


class Guard(Protocol):
    """A condition checked inside every write transaction, before anything is written."""

    async def check(self, conn: asyncpg.Connection) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Registered:
    """The cluster is registered and not being removed. The row is key-share-locked until
    commit: removal first marks the row (which later writes then refuse), then deletes it,
    which waits only for the writes already in flight and deletes their rows too. A key
    share lock does not conflict with the health updates made on every agent request."""

    cluster: str

    async def check(self, conn: asyncpg.Connection) -> None:
        found = await conn.fetchval(
            "SELECT 1 FROM clusters WHERE name = $1 AND removing_at IS NULL FOR KEY SHARE", self.cluster)
        if found is None:
            raise FenceLost(f"cluster {self.cluster!r} is not registered")


@dataclass(frozen=True, kw_only=True, slots=True)
class Owner:
    """The session advisory lock ``key`` is still held by backend ``pid``: the owner's
    dedicated connection (docs/design.md, "Ownership locks belong to a connection")."""

    key: int
    pid: int

    async def check(self, conn: asyncpg.Connection) -> None:
        if await advisory_holder(conn, self.key) != self.pid:
            raise FenceLost(f"ownership lock {self.key} is no longer held by backend {self.pid}")


async def advisory_holder(conn: asyncpg.Connection | asyncpg.Pool, key: int) -> int | None:
    """The backend pid holding session advisory lock ``key`` (a bigint key is stored as
    classid = high 32 bits, objid = low 32 bits, objsubid = 1), or None."""
    pid: int | None = await conn.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid"
        " AND objsubid = 1", key)
    return pid
