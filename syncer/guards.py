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
        if await conn.fetchval(_REGISTERED, self.cluster) is None:
            raise _not_registered(self.cluster)


@dataclass(frozen=True, kw_only=True, slots=True)
class Owner:
    """The session advisory lock ``key`` is still held by backend ``pid``: the owner's
    dedicated connection (docs/design.md, "Ownership locks belong to a connection")."""

    key: int
    pid: int

    async def check(self, conn: asyncpg.Connection) -> None:
        if await advisory_holder(conn, self.key) != self.pid:
            raise _not_owned(self.key, self.pid)


@dataclass(frozen=True, kw_only=True, slots=True)
class RegisteredOwner:
    """:class:`Registered` and :class:`Owner` in one round trip: pull mode checks both in
    every write transaction, and each round trip there is paid by every write."""

    cluster: str
    key: int
    pid: int

    async def check(self, conn: asyncpg.Connection) -> None:
        row = await conn.fetchrow(_REGISTERED_AND_HOLDER, self.cluster, self.key)
        assert row is not None
        if row["registered"] is None:
            raise _not_registered(self.cluster)
        if row["holder"] != self.pid:
            raise _not_owned(self.key, self.pid)


_REGISTERED = "SELECT 1 FROM clusters WHERE name = $1 AND removing_at IS NULL FOR KEY SHARE"


def _holder(key: str) -> str:
    """The pid holding the session advisory lock whose bigint key is parameter ``key`` (stored
    as classid = high 32 bits, objid = low 32 bits, objsubid = 1)."""
    return ("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            f" AND classid = ({key}::bigint >> 32)::oid AND objid = ({key}::bigint & 4294967295)::oid"
            " AND objsubid = 1")


_HOLDER = _holder("$1")
_REGISTERED_AND_HOLDER = f"SELECT ({_REGISTERED}) AS registered, ({_holder('$2')}) AS holder"


def _not_registered(cluster: str) -> FenceLost:
    return FenceLost(f"cluster {cluster!r} is not registered")


def _not_owned(key: int, pid: int) -> FenceLost:
    return FenceLost(f"ownership lock {key} is no longer held by backend {pid}")


async def advisory_holder(conn: asyncpg.Connection | asyncpg.Pool, key: int) -> int | None:
    """The backend pid holding session advisory lock ``key`` (a bigint key is stored as
    classid = high 32 bits, objid = low 32 bits, objsubid = 1), or None."""
    pid: int | None = await conn.fetchval(_HOLDER, key)
    return pid
