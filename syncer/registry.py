"""The cluster registry: which member clusters exist, how they sync, how they are doing.

Push clusters authenticate their agent with a token that is shown once and stored only
as its SHA-256. Pull clusters keep their kubeconfig document in the database, so that any
syncer process sharing the database can take the cluster over.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
import yaml

Mode = Literal["push", "pull"]
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# A push cluster whose agent has said nothing for this long is reported unhealthy. Agents
# send at least a bookmark per watched type every few minutes, so silence means trouble.
PUSH_SILENCE_S = 300
PUSH_SILENCE_ENV = "KUBEPEDIA_PUSH_SILENCE_SECONDS"


def push_silence_s() -> float:
    """``$KUBEPEDIA_PUSH_SILENCE_SECONDS`` if it is a positive number, else PUSH_SILENCE_S
    (tests shorten it to see a silent agent's cluster turn stale)."""
    try:
        seconds = float(os.environ.get(PUSH_SILENCE_ENV) or PUSH_SILENCE_S)
    except ValueError:
        return PUSH_SILENCE_S
    return seconds if 0 < seconds < float("inf") else PUSH_SILENCE_S


class RegistryError(ValueError):
    """A registry request that cannot be carried out; ``code`` is the HTTP status."""

    def __init__(self, message: str, *, code: int, reason: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, kw_only=True, slots=True)
class Cluster:
    name: str
    mode: Mode
    labels: dict[str, str]
    kubeconfig: str | None
    settings: dict[str, Any]
    healthy: bool | None
    health_message: str | None
    last_seen_at: datetime | None

    @property
    def keep_secret_data(self) -> bool:
        return bool(self.settings.get("keepSecretData", False))


def hash_token(token: str) -> str:
    # surrogateescape: a header with stray non-UTF-8 bytes is just a wrong token, not an error.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise RegistryError(
            f"invalid cluster name {name!r}: use lower-case letters, digits and '-', at most 63",
            code=422, reason="Invalid")


def _cluster(row: asyncpg.Record) -> Cluster:
    return Cluster(name=row["name"], mode=row["mode"], labels=row["labels"], kubeconfig=row["kubeconfig"],
                   settings=row["settings"], healthy=row["healthy"], health_message=row["health_message"],
                   last_seen_at=row["last_seen_at"])


async def add(pool: asyncpg.Pool, *, name: str, mode: Mode, kubeconfig: str | None = None,
              labels: dict[str, str] | None = None, settings: dict[str, Any] | None = None) -> str | None:
    """Register a cluster; returns the agent token for a push cluster (shown once)."""
    check_name(name)
    if mode == "pull" and not kubeconfig:
        raise RegistryError("a pull cluster needs a kubeconfig", code=422, reason="Invalid")
    if mode == "pull":
        _check_kubeconfig(kubeconfig or "")
    token = secrets.token_urlsafe(32) if mode == "push" else None
    try:
        await pool.execute(
            "INSERT INTO clusters (name, mode, labels, token_hash, kubeconfig, settings)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            name, mode, labels or {}, hash_token(token) if token else None,
            kubeconfig if mode == "pull" else None, settings or {})
    except asyncpg.UniqueViolationError as exc:
        raise RegistryError(f"cluster {name!r} already exists", code=409, reason="AlreadyExists") from exc
    return token


def _check_kubeconfig(document: str) -> None:
    try:
        parsed = yaml.safe_load(document)
    except yaml.YAMLError as exc:
        raise RegistryError(f"the kubeconfig is not YAML: {exc}", code=422, reason="Invalid") from exc
    if not isinstance(parsed, dict):
        raise RegistryError("the kubeconfig is not a mapping", code=422, reason="Invalid")


async def get(pool: asyncpg.Pool, name: str) -> Cluster | None:
    row = await pool.fetchrow("SELECT * FROM clusters WHERE name = $1", name)
    return _cluster(row) if row is not None else None


async def pull_clusters(pool: asyncpg.Pool) -> list[Cluster]:
    rows = await pool.fetch(
        "SELECT * FROM clusters WHERE mode = 'pull' AND removing_at IS NULL ORDER BY name")
    return [_cluster(r) for r in rows]


async def authenticate(pool: asyncpg.Pool, *, cluster: str, token: str) -> Cluster:
    """The cluster an agent's token opens, or RegistryError (404, 401, 403)."""
    row = await pool.fetchrow("SELECT * FROM clusters WHERE name = $1", cluster)
    if row is None:
        raise RegistryError(f"cluster {cluster!r} is not registered", code=404, reason="NotFound")
    expected = row["token_hash"]
    offered = hash_token(token)
    if expected is not None and hmac.compare_digest(expected, offered):
        return _cluster(row)
    other = await pool.fetchval("SELECT name FROM clusters WHERE token_hash = $1", offered)
    if other is not None:
        raise RegistryError(f"this token belongs to another cluster, not {cluster!r}",
                            code=403, reason="Forbidden")
    raise RegistryError("invalid token", code=401, reason="Unauthorized")


async def seen(pool: asyncpg.Pool, name: str) -> None:
    """An agent spoke: the cluster is alive (the server's clock, not ours)."""
    await pool.execute(
        "UPDATE clusters SET last_seen_at = now(), healthy = true, health_message = NULL"
        " WHERE name = $1 AND (last_seen_at IS NULL OR last_seen_at < now() - interval '1 second'"
        " OR healthy IS DISTINCT FROM true)", name)


async def set_health(pool: asyncpg.Pool, name: str, *, healthy: bool, message: str | None) -> None:
    await pool.execute(
        "UPDATE clusters SET healthy = $2, health_message = $3,"
        " last_seen_at = CASE WHEN $2 THEN now() ELSE last_seen_at END WHERE name = $1",
        name, healthy, message)


async def overview(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """What ``kubepedia cluster list`` shows: health, staleness, per-type sync state."""
    clusters = await pool.fetch(
        "SELECT name, mode, labels, healthy, health_message, last_seen_at, created_at,"
        " CASE WHEN mode = 'push' THEN last_seen_at < now() - make_interval(secs => $1)"
        " ELSE false END AS silent, now() AS now FROM clusters ORDER BY name", push_silence_s())
    states = await pool.fetch(
        "SELECT cluster, grp, resource, version, phase, checkpoint, object_count, last_error,"
        " last_event_at, updated_at FROM sync_state ORDER BY cluster, grp, resource")
    by_cluster: dict[str, list[dict[str, Any]]] = {}
    for s in states:
        by_cluster.setdefault(s["cluster"], []).append({
            "type": f"{s['resource']}.{s['grp']}" if s["grp"] else s["resource"],
            "version": s["version"], "phase": s["phase"], "checkpoint": s["checkpoint"],
            "objects": s["object_count"], "lastError": s["last_error"],
            "lastEventAt": _iso(s["last_event_at"]), "updatedAt": _iso(s["updated_at"]),
        })
    return [_overview_row(c, by_cluster.get(c["name"], [])) for c in clusters]


def _overview_row(c: asyncpg.Record, types: list[dict[str, Any]]) -> dict[str, Any]:
    healthy = bool(c["healthy"]) and not c["silent"]
    message = c["health_message"] or ("no word from the agent" if c["silent"] else None)
    lag = (c["now"] - c["last_seen_at"]).total_seconds() if c["last_seen_at"] else None
    return {
        "name": c["name"], "mode": c["mode"], "labels": c["labels"],
        "healthy": healthy if c["healthy"] is not None else None, "stale": not healthy,
        "healthMessage": message, "lastSeenAt": _iso(c["last_seen_at"]),
        "lagSeconds": round(lag, 1) if lag is not None else None,
        "objects": sum(t["objects"] for t in types),
        "errors": sum(1 for t in types if t["lastError"]), "types": types,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
