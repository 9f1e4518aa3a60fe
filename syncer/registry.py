"""The cluster registry: which member clusters exist, how they sync, how they are doing.

Push clusters authenticate their agent with a token that is shown once and stored only
as its SHA-256. A rotated token (``rotate_token``) keeps working until the end of its grace
period, so that a running agent can be switched to the new one without a gap. Pull clusters
keep their kubeconfig document in the database, so that any syncer process sharing the
database can take the cluster over. This module is the only
one that reads or writes that column: documents are checked when registered (no commands
or local files unless the server allows them, see ``agent.kubeconfig_policy``), sealed
before they are written and opened when read (``syncer.secretbox``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg

from agent import kubeconfig_policy
from syncer import secretbox, secretfile
from syncer.secretbox import KeyFileError, SecretBox, SecretBoxError

Mode = Literal["push", "pull"]
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# A push cluster whose agent has said nothing for this long is reported unhealthy. Agents
# send at least a bookmark per watched type every few minutes, so silence means trouble.
PUSH_SILENCE_S = 300
PUSH_SILENCE_ENV = "KUBEPEDIA_PUSH_SILENCE_SECONDS"
# How long a rotated agent token keeps working unless the rotation says otherwise: time for a
# rollout of the agent with the new token. At most MAX_TOKEN_GRACE_S (a leaked token should not
# outlive its rotation by months); 0 ends the old token at once.
TOKEN_GRACE_S = 3600
MAX_TOKEN_GRACE_S = 30 * 86400


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
    # The kubeconfig document in clear: set only when read through ``Kubeconfigs``
    # (``pull_clusters``), and kept out of reprs, hence out of logs and tracebacks.
    kubeconfig: str | None = field(repr=False)
    kubeconfig_error: str | None  # why the stored kubeconfig cannot be opened
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
    if not NAME_RE.fullmatch(name):
        raise RegistryError(
            f"invalid cluster name {name[:80]!r}: use lower-case letters, digits and '-', at most 63",
            code=422, reason="Invalid")


@dataclass(frozen=True, kw_only=True, slots=True)
class Kubeconfigs:
    """How pull clusters' kubeconfigs are kept: sealed with ``box`` at rest, and refused
    when they would run commands or read files on this machine, unless ``allow_local``
    (``kubepedia serve --allow-kubeconfig-exec``)."""

    box: SecretBox
    allow_local: bool = False

    def check(self, document: str) -> None:
        """Refuse (422) a document that is no kubeconfig or that the policy refuses."""
        try:
            kubeconfig_policy.check(kubeconfig_policy.parse(document), allow_local=self.allow_local)
        except kubeconfig_policy.KubeconfigUnreadable as exc:
            raise RegistryError(f"the kubeconfig is {exc}", code=422, reason="Invalid") from exc
        except kubeconfig_policy.KubeconfigRefused as exc:
            raise RegistryError(f"{exc}{ALLOWANCE_HINT}", code=422, reason="Invalid") from exc

    def seal(self, cluster: str, document: str) -> str:
        try:
            return self.box.seal(document, context=_context(cluster))
        except SecretBoxError as exc:
            raise RegistryError(f"cannot seal the kubeconfig: {exc}", code=500,
                                reason="InternalError") from exc

    def open(self, cluster: str, stored: str) -> tuple[str | None, str | None]:
        """(document, None), or (None, why it cannot be opened)."""
        try:
            return self.box.open(stored, context=_context(cluster)), None
        except SecretBoxError as exc:
            return None, f"the stored kubeconfig cannot be used: {exc}"


ALLOWANCE_HINT = " (allowed only when the server runs with --allow-kubeconfig-exec)"


def _context(cluster: str) -> str:
    return f"clusters/{cluster}/kubeconfig"


def _cluster(row: asyncpg.Record, kubeconfigs: Kubeconfigs | None = None) -> Cluster:
    document, error = None, None
    if kubeconfigs is not None and row["kubeconfig"] is not None:
        document, error = kubeconfigs.open(row["name"], row["kubeconfig"])
    return Cluster(name=row["name"], mode=row["mode"], labels=row["labels"], kubeconfig=document,
                   kubeconfig_error=error, settings=row["settings"], healthy=row["healthy"],
                   health_message=row["health_message"], last_seen_at=row["last_seen_at"])


async def add(pool: asyncpg.Pool, *, name: str, mode: Mode, kubeconfigs: Kubeconfigs,
              kubeconfig: str | None = None, labels: dict[str, str] | None = None,
              settings: dict[str, Any] | None = None) -> str | None:
    """Register a cluster; returns the agent token for a push cluster (shown once)."""
    check_name(name)
    sealed = None
    if mode == "pull":
        if not kubeconfig:
            raise RegistryError("a pull cluster needs a kubeconfig", code=422, reason="Invalid")
        kubeconfigs.check(kubeconfig)
        sealed = kubeconfigs.seal(name, kubeconfig)
    token = secretfile.new_token() if mode == "push" else None
    try:
        await pool.execute(
            "INSERT INTO clusters (name, mode, labels, token_hash, kubeconfig, settings)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            name, mode, labels or {}, hash_token(token) if token else None,
            sealed, settings or {})
    except asyncpg.UniqueViolationError as exc:
        raise RegistryError(f"cluster {name!r} already exists", code=409, reason="AlreadyExists") from exc
    return token


@dataclass(frozen=True, slots=True)
class Resealed:
    resealed: list[str]  # clusters whose kubeconfig is now sealed with the newest key
    failed: dict[str, str]  # cluster -> why its kubeconfig could not be opened (left as it was)


async def reseal_kubeconfigs(conn: asyncpg.Connection, kubeconfigs: Kubeconfigs, *,
                             clear_only: bool) -> Resealed:
    """Seal stored kubeconfigs with the newest key: those stored in clear (written before
    kubeconfigs were sealed) and, unless ``clear_only``, those sealed with an older key.

    One transaction over locked rows, so processes doing this at once do it once (the
    second re-reads each row after the first committed, and finds nothing to do)."""
    newest = kubeconfigs.box.key_ids[-1]
    resealed: list[str] = []
    failed: dict[str, str] = {}
    async with conn.transaction():
        rows = await conn.fetch("SELECT name, kubeconfig FROM clusters WHERE kubeconfig IS NOT NULL"
                                " ORDER BY name FOR UPDATE")
        for row in rows:
            name, stored = row["name"], row["kubeconfig"]
            if not secretbox.is_sealed(stored):
                document = stored
            elif clear_only or secretbox.key_id_of(stored) == newest:
                continue
            else:
                opened, error = kubeconfigs.open(name, stored)
                if opened is None:
                    failed[name] = error or "cannot be opened"
                    continue
                document = opened
            await conn.execute("UPDATE clusters SET kubeconfig = $2 WHERE name = $1",
                               name, kubeconfigs.seal(name, document))
            resealed.append(name)
    return Resealed(resealed=resealed, failed=failed)


async def key_usage(conn: asyncpg.Connection) -> dict[str, int]:
    """How many stored kubeconfigs each key id seals ("" for those stored in clear)."""
    rows = await conn.fetch(
        "SELECT CASE WHEN starts_with(kubeconfig, $1) THEN split_part(kubeconfig, ':', 2) ELSE ''"
        " END AS key_id, count(*) AS n FROM clusters WHERE kubeconfig IS NOT NULL GROUP BY 1",
        secretbox.PREFIX)
    return {r["key_id"]: int(r["n"]) for r in rows}


async def prepare_kubeconfigs(conn: asyncpg.Connection, kubeconfigs: Kubeconfigs) -> Resealed:
    """At start: refuse a key file that opens none of the sealed kubeconfigs (it is not the
    key file of the other processes sharing this database), then seal those still stored
    in clear by a version that did not seal them."""
    sealed_with = {key_id for key_id in await key_usage(conn) if key_id}
    if sealed_with and not sealed_with & set(kubeconfigs.box.key_ids):
        raise KeyFileError(
            f"key file {kubeconfigs.box.path} opens none of the stored kubeconfigs (sealed with key "
            f"{', '.join(sorted(sealed_with))}): every kubepedia serve sharing a database needs the "
            "same key file")
    return await reseal_kubeconfigs(conn, kubeconfigs, clear_only=True)


async def get(pool: asyncpg.Pool, name: str) -> Cluster | None:
    row = await pool.fetchrow("SELECT * FROM clusters WHERE name = $1", name)
    return _cluster(row) if row is not None else None


async def pull_clusters(pool: asyncpg.Pool, kubeconfigs: Kubeconfigs) -> list[Cluster]:
    """Pull clusters with their kubeconfigs opened; one that cannot be opened (altered, or
    sealed with a key this process lacks) carries ``kubeconfig_error`` instead."""
    rows = await pool.fetch(
        "SELECT * FROM clusters WHERE mode = 'pull' AND removing_at IS NULL ORDER BY name")
    return [_cluster(r, kubeconfigs) for r in rows]


async def authenticate(pool: asyncpg.Pool, *, cluster: str, token: str) -> Cluster:
    """The cluster an agent's token opens, or RegistryError 401: the current token, or the one
    before the last rotation until its expiry (the server's clock).

    One answer for every failure (an unknown cluster, a wrong token, another cluster's
    token, an expired one): a caller without a valid token learns nothing, not even which
    clusters exist.
    """
    row = await pool.fetchrow(
        "SELECT *, coalesce(previous_token_expires_at > now(), false) AS previous_valid"
        " FROM clusters WHERE name = $1", cluster)
    if row is not None and _opens(row, hash_token(token)):
        return _cluster(row)
    raise RegistryError("invalid token for this cluster", code=401, reason="Unauthorized")


def _opens(row: asyncpg.Record, offered: str) -> bool:
    # Both hashes are compared whatever the first comparison found, in constant time.
    current = _same(row["token_hash"], offered)
    previous = _same(row["previous_token_hash"], offered)
    return current or (previous and bool(row["previous_valid"]))


def _same(expected: str | None, offered: str) -> bool:
    return expected is not None and hmac.compare_digest(expected, offered)


@dataclass(frozen=True, kw_only=True, slots=True)
class Rotated:
    token: str  # the new agent token, shown once
    previous_expires_at: datetime | None  # when the token it replaces stops working (None: now)


async def rotate_token(pool: asyncpg.Pool, *, name: str, grace_s: float = TOKEN_GRACE_S) -> Rotated:
    """A new agent token for a push cluster; the current one keeps working for ``grace_s``
    seconds and the one before it (of an earlier rotation) stops at once.

    404 for a cluster not registered, 409 for a pull cluster (it has no agent token), 422 for
    a grace period that is negative or longer than MAX_TOKEN_GRACE_S."""
    if not (math.isfinite(grace_s) and 0 <= grace_s <= MAX_TOKEN_GRACE_S):
        raise RegistryError(f"the grace period must be between 0 and {MAX_TOKEN_GRACE_S} seconds",
                            code=422, reason="Invalid")
    token = secretfile.new_token()
    # One statement: two rotations at once are applied one after the other (the row's lock),
    # and the second keeps the first one's token as the previous one.
    row = await pool.fetchrow(
        "UPDATE clusters SET token_hash = $2,"
        " previous_token_hash = CASE WHEN $3::float8 > 0 THEN token_hash END,"
        " previous_token_expires_at = CASE WHEN $3::float8 > 0"
        "   THEN now() + make_interval(secs => $3::float8) END"
        " WHERE name = $1 AND mode = 'push' AND removing_at IS NULL"
        " RETURNING previous_token_expires_at", name, hash_token(token), float(grace_s))
    if row is None:
        raise await _not_rotatable(pool, name)
    return Rotated(token=token, previous_expires_at=row["previous_token_expires_at"])


async def _not_rotatable(pool: asyncpg.Pool, name: str) -> RegistryError:
    mode = await pool.fetchval("SELECT mode FROM clusters WHERE name = $1 AND removing_at IS NULL", name)
    if mode is None:
        return RegistryError(f"cluster {name[:80]!r} is not registered", code=404, reason="NotFound")
    return RegistryError(f"cluster {name[:80]!r} is a {mode} cluster: it has no agent token (only push "
                         "clusters do)", code=409, reason="Conflict")


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
        "SELECT name, mode, labels, healthy, health_message, last_seen_at, created_at, last_error,"
        " CASE WHEN mode = 'push' THEN last_seen_at < now() - make_interval(secs => $1)"
        " ELSE false END AS silent, now() AS now FROM clusters ORDER BY name", push_silence_s())
    states = await pool.fetch(
        "SELECT cluster, grp, resource, version, phase, checkpoint, object_count, skipped, last_error,"
        " last_event_at, updated_at FROM sync_state ORDER BY cluster, grp, resource")
    by_cluster: dict[str, list[dict[str, Any]]] = {}
    for s in states:
        by_cluster.setdefault(s["cluster"], []).append({
            "type": f"{s['resource']}.{s['grp']}" if s["grp"] else s["resource"],
            "version": s["version"], "phase": s["phase"], "checkpoint": s["checkpoint"],
            "objects": s["object_count"], "skipped": s["skipped"], "lastError": s["last_error"],
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
        "objects": sum(t["objects"] for t in types), "skipped": sum(t["skipped"] for t in types),
        "errors": sum(1 for t in types if t["lastError"]) + (1 if c["last_error"] else 0),
        "lastError": c["last_error"], "types": types,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
