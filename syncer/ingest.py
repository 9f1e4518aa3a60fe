"""The ingest core: apply a member cluster's changes to the store, exactly once, in order.

Two ways in, both per (cluster, resource type):

* ``apply_batch``: an ordered batch of watch events and the checkpoint it reaches, in one
  transaction. Replaying a committed batch changes nothing.
* snapshots (``snapshot_start`` / ``snapshot_page`` / ``snapshot_end``): a relist. Pages
  are merged as they arrive (COPY into staging, one merge statement); the end deletes, in
  one transaction with the new checkpoint, every row the snapshot did not contain. Because
  the snapshot's progress lives in the database, it can span many HTTP requests.

An object that cannot be stored (``syncer.validate``) is skipped; the rest of its batch or
page is applied. The type's ``sync_state`` counts skipped objects since its last snapshot
began and its ``last_error`` names the latest; a skipped object still counts as seen by its
snapshot, so the snapshot's count adds up and a stored older version of it is kept (stale,
and reported) rather than deleted as if the object were gone. Validation runs off the event
loop (a worker thread, or a decoder process for large pages: ``syncer.decoding``). Writes
that would pass the cluster's quota (``syncer.quota``) are refused whole.

Every change appends to ``change_log`` with a number from ``change_seq``. Writers draw
numbers freely, so numbers may commit out of order; what keeps readers exact is that a
write first marks itself in flight (``change_log_mark``, migration 18: a shared advisory
lock naming the newest number drawn before its own, held until it ends), and readers stop
at the horizon (``change_log_horizon``): every number at or below it belongs to a
transaction that has ended. A reader that resumes after N, reading up to the horizon,
never misses a smaller number committed later (docs/design.md, "Sequence numbers and the
horizon"). A write's numbers follow its batch's order but need not be contiguous.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import asyncpg

from kube.resources import ResourceType, type_key
from syncer import metrics
from syncer.db import STAGING_COLUMNS
from syncer.decoding import json_bytes, off_loop
from syncer.guards import FenceLost, Guard, Owner, Registered, advisory_holder
from syncer.plan import LogEntry, Plan, StoredState, plan_batch, plan_snapshot_page
from syncer.quota import Quota, QuotaExceeded
from syncer.schema import ANALYZE_LOCK, NOTIFY_CHANNEL
from syncer.validate import BadInput, Batch, Event, Page, Row, Skip, decode_json, to_events, to_rows

log = logging.getLogger(__name__)

LOG_STAGING_COLUMNS = ("seq", "version", "kind", "namespace", "name", "uid", "resource_version", "type",
                       "object")


class SnapshotLost(RuntimeError):
    """The snapshot is unknown or incomplete; the caller must list again."""


class CheckpointMismatch(RuntimeError):
    """A batch follows a checkpoint that is not the committed one: it is older than what
    is stored (a delayed request) or follows state that is gone; the caller must list again."""


MAX_ERROR = 2000  # characters of a last error kept


def storable(message: str) -> str:
    """An error message as a text column can keep it (no U+0000, bounded)."""
    return message.replace("\x00", "\ufffd")[:MAX_ERROR]

DEFAULT_QUOTA = Quota()


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchResult:
    applied: int  # changes written (change-log entries)
    checkpoint: str | None
    replayed: bool = False
    skipped: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class PageResult:
    accepted: int  # objects the page held, skipped ones included: what a snapshot counts
    skipped: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class SnapshotResult:
    deleted: int
    checkpoint: str


class Store:
    """The write side of the store, over an asyncpg pool (see ``syncer.db``)."""

    def __init__(self, pool: asyncpg.Pool, *, guards: Sequence[Guard] = (),
                 quota: Quota = DEFAULT_QUOTA) -> None:
        self._pool = pool
        self._guards = tuple(guards)
        self.quota = quota

    async def _guard(self, conn: asyncpg.Connection) -> None:
        for guard in self._guards:
            await guard.check(conn)

    async def _begin(self, conn: asyncpg.Connection, *, cluster: str, rtype: ResourceType,
                     shared: bool = False) -> str | None:
        """First statements of every write transaction: guards, then the type's row lock."""
        await self._guard(conn)
        return await _lock_state(conn, cluster=cluster, rtype=rtype, shared=shared, quota=self.quota)

    async def record_error(self, *, cluster: str, rtype: ResourceType, message: str) -> None:
        """Keep the last error of a type where ``cluster list`` shows it: a type seen for the
        first time gets its sync state (within the types quota), else the cluster keeps it."""
        message = storable(message)
        async with _transaction(self._pool) as conn:
            found = await conn.fetchval(
                "UPDATE sync_state SET last_error = $4, updated_at = now()"
                " WHERE cluster = $1 AND grp = $2 AND resource = $3 RETURNING 1",
                cluster, rtype.group, rtype.resource, message)
            if found is None and not await _admit_type(conn, cluster=cluster, rtype=rtype, quota=self.quota,
                                                       phase="error", error=message):
                await conn.execute("UPDATE clusters SET last_error = $2 WHERE name = $1",
                                   cluster, storable(f"{rtype.key}: {message}"))

    # -- reading sync state -------------------------------------------------------------

    async def checkpoints(self, *, cluster: str) -> dict[str, str]:
        """Committed checkpoint per type key (``ResourceType.key``)."""
        rows = await self._pool.fetch(
            "SELECT grp, resource, checkpoint FROM sync_state"
            " WHERE cluster = $1 AND checkpoint IS NOT NULL",
            cluster,
        )
        return {type_key(r["grp"], r["resource"]): r["checkpoint"] for r in rows}

    # -- watch batches --------------------------------------------------------------------

    async def apply_batch(
        self,
        *,
        cluster: str,
        rtype: ResourceType,
        events: Sequence[Any],
        resource_version: str | None = None,
        after: str | None = None,
        keep_secret_data: bool = False,
    ) -> BatchResult:
        """Apply ordered watch events (wire form) and advance the checkpoint, atomically.

        The checkpoint is ``resource_version`` or else the last event's. A batch whose
        checkpoint is already the committed one is a replay and changes nothing; within a
        batch, events up to an object's stored resourceVersion are skipped, so a batch
        that overlaps what was committed is applied only from where it is new. With
        ``after`` (the checkpoint the batch follows), a batch that follows anything but the
        committed checkpoint is refused (``CheckpointMismatch``) rather than rolling the store
        back to older state.

        An event whose object cannot be stored is skipped (counted in ``skipped``, named in
        the type's last error); the others are applied and the checkpoint still advances, so
        one bad object cannot hold the type back. A malformed batch (``BadInput``) or one
        that would pass the cluster's objects quota (``QuotaExceeded``) is refused whole.
        """
        batch = await off_loop(_to_events, events, rtype=rtype, keep_secret_data=keep_secret_data,
                               size=json_bytes(events, events=True))
        parsed = batch.events
        checkpoint = resource_version or (parsed[-1].resource_version if parsed else None)
        async with _transaction(self._pool) as conn:
            committed = await self._begin(conn, cluster=cluster, rtype=rtype)
            if checkpoint is not None and checkpoint == committed:
                return BatchResult(applied=0, checkpoint=committed, replayed=True)
            if after is not None and after != committed:
                raise CheckpointMismatch(
                    f"{cluster}/{rtype.key}: batch follows {after!r}, the store is at {committed!r}")
            rows = [e.row for e in parsed if e.row is not None]
            stored = await _stored(conn, cluster=cluster, rtype=rtype, keys={r.key for r in rows})
            plan = plan_batch(parsed, stored)
            await self._check_objects_quota(conn, cluster=cluster, rtype=rtype, delta=plan.count_delta)
            # The type's row is this transaction's already (FOR UPDATE): its update goes
            # before the numbered write, so that the write is in flight (and holds back the
            # horizon every watch waits for) for the fewest round trips.
            await _record_skips(conn, cluster=cluster, rtype=rtype, skipped=batch.skipped)
            await _advance(conn, cluster=cluster, rtype=rtype, checkpoint=checkpoint,
                           delta=plan.count_delta, touched=bool(events))
            await _write(conn, cluster=cluster, rtype=rtype, plan=plan)
        return BatchResult(applied=len(plan.log), checkpoint=checkpoint, skipped=len(batch.skipped))

    async def _check_objects_quota(self, conn: asyncpg.Connection, *, cluster: str, rtype: ResourceType,
                                   delta: int) -> None:
        if delta <= 0:
            return
        held: int = await conn.fetchval(
            "SELECT coalesce(sum(object_count), 0) FROM sync_state WHERE cluster = $1", cluster)
        if held + delta > self.quota.objects:
            raise QuotaExceeded(f"cluster {cluster} holds {held} objects, {delta} more for {rtype.key}"
                                f" would pass its limit of {self.quota.objects}")

    # -- snapshots ------------------------------------------------------------------------

    async def snapshot_start(self, *, cluster: str, rtype: ResourceType) -> int:
        """Open a snapshot (a relist); any older open snapshot of the type is dropped."""
        async with _transaction(self._pool) as conn:
            await self._begin(conn, cluster=cluster, rtype=rtype)
            await _drop_snapshots(conn, cluster=cluster, rtype=rtype)
            # A relist also refreshes how discovery describes the type (read API discovery).
            await conn.execute(
                "UPDATE sync_state SET phase = 'listing', skipped = 0, updated_at = now(),"
                " singular = $4, short_names = $5, categories = $6"
                " WHERE cluster = $1 AND grp = $2 AND resource = $3",
                cluster, rtype.group, rtype.resource, rtype.singular, list(rtype.short_names),
                list(rtype.categories),
            )
            snapshot_id: int = await conn.fetchval(
                "INSERT INTO snapshots (cluster, grp, resource) VALUES ($1, $2, $3) RETURNING id",
                cluster, rtype.group, rtype.resource,
            )
        return snapshot_id

    async def snapshot_page(
        self,
        *,
        cluster: str,
        rtype: ResourceType,
        snapshot_id: int,
        items: Sequence[Any],
        keep_secret_data: bool = False,
        omitted: Sequence[Any] = (),
    ) -> PageResult:
        """Merge one page of a snapshot; replaying a page changes nothing.

        Objects that cannot be stored are skipped but seen: the snapshot's end counts them,
        and keeps (does not delete) a version of them stored earlier. ``omitted`` are objects
        the sender left out for their size (``agent.protocol``), skipped the same way. The
        result's ``accepted`` counts every object of the page, skipped ones included."""
        page = await off_loop(_to_rows, items, rtype=rtype, keep_secret_data=keep_secret_data,
                              omitted=omitted, size=json_bytes(items))
        rows = page.rows
        async with _transaction(self._pool) as conn:
            # Pages of one snapshot touch disjoint objects and may run concurrently.
            await self._begin(conn, cluster=cluster, rtype=rtype, shared=True)
            await _check_snapshot(conn, cluster=cluster, rtype=rtype, snapshot_id=snapshot_id)
            stored = await _stored(conn, cluster=cluster, rtype=rtype, keys={r.key for r in rows})
            plan = plan_snapshot_page(rows, stored)
            await self._check_objects_quota(conn, cluster=cluster, rtype=rtype, delta=plan.count_delta)
            await _see(conn, cluster=cluster, snapshot_id=snapshot_id, keys=[r.key for r in rows])
            # Skipped objects are seen too: counted, and their stored versions kept.
            new = await _see(conn, cluster=cluster, snapshot_id=snapshot_id,
                             keys=[s.key for s in page.skipped if s.key is not None])
            if plan.log:
                await _one_page_at_a_time(conn, cluster=cluster, rtype=rtype)
            await _write(conn, cluster=cluster, rtype=rtype, plan=plan)
            await _adjust_count(conn, cluster=cluster, rtype=rtype, delta=plan.count_delta)
            await _record_skips(conn, cluster=cluster, rtype=rtype,
                                skipped=[s for s in page.skipped if s.key in new])
        if plan.count_delta > 0:
            await _refresh_statistics(self._pool)
        return PageResult(accepted=page.size, skipped=len(page.skipped))

    async def snapshot_end(
        self, *, cluster: str, rtype: ResourceType, snapshot_id: int, resource_version: str,
        count: int | None = None,
    ) -> SnapshotResult:
        """Close a snapshot: delete what it did not contain, commit its checkpoint.

        ``count`` is the number of objects the lister saw (skipped ones included); if the
        store holds a different number for this snapshot (pages lost in transit or to a
        crash) nothing is deleted and ``SnapshotLost`` asks for a new list. Ending a
        snapshot again once its end has committed (the answer was lost) is a replay and
        changes nothing.
        """
        if not resource_version:
            raise BadInput("snapshot end: resourceVersion is missing")
        async with _transaction(self._pool) as conn:
            committed = await self._begin(conn, cluster=cluster, rtype=rtype)
            if not await _snapshot_open(conn, cluster=cluster, rtype=rtype, snapshot_id=snapshot_id):
                if committed == resource_version:
                    return SnapshotResult(deleted=0, checkpoint=resource_version)
                raise _not_open(cluster=cluster, rtype=rtype, snapshot_id=snapshot_id)
            seen = await conn.fetchval(
                "SELECT count(*) FROM snapshot_seen WHERE cluster = $1 AND snapshot_id = $2",
                cluster, snapshot_id)
            if count is not None and seen != count:
                # Committed, not rolled back with the error: the snapshot is unusable.
                await _drop_snapshots(conn, cluster=cluster, rtype=rtype)
                incomplete = f"holds {seen} objects, the list had {count}"
            else:
                incomplete = ""
                deleted = await _close_snapshot(conn, cluster=cluster, rtype=rtype,
                                                snapshot_id=snapshot_id, checkpoint=resource_version)
        if incomplete:
            raise SnapshotLost(f"snapshot {snapshot_id} of {cluster}/{rtype.key} {incomplete}; list again")
        if deleted:
            log.info("snapshot removed objects it no longer holds",
                     extra={"cluster": cluster, "type": rtype.key, "deleted": deleted})
        return SnapshotResult(deleted=deleted, checkpoint=resource_version)

    @asynccontextmanager
    async def snapshot(self, *, cluster: str, rtype: ResourceType) -> AsyncIterator[Snapshot]:
        """``async with store.snapshot(...) as snap: await snap.add(page); await snap.end(rv)``"""
        snapshot_id = await self.snapshot_start(cluster=cluster, rtype=rtype)
        yield Snapshot(store=self, cluster=cluster, rtype=rtype, snapshot_id=snapshot_id)

    # -- removal --------------------------------------------------------------------------

    async def remove_type(self, *, cluster: str, rtype: ResourceType) -> int:
        """Delete every row of a type the cluster no longer serves, logging each deletion."""
        async with _transaction(self._pool) as conn:
            await self._begin(conn, cluster=cluster, rtype=rtype)
            await _mark_in_flight(conn)
            deleted = await _delete_logged(
                conn, _DELETE_WHERE.format(cond="cluster = $1 AND grp = $2 AND resource = $3"),
                cluster, rtype.group, rtype.resource)
            await _drop_snapshots(conn, cluster=cluster, rtype=rtype)
            await conn.execute(
                "DELETE FROM sync_state WHERE cluster = $1 AND grp = $2 AND resource = $3",
                cluster, rtype.group, rtype.resource)
        return deleted

    async def remove_cluster(self, *, cluster: str) -> int:
        """Unregister a cluster and delete every row of it; returns the number of objects
        deleted. New writes are refused first, writes in flight finish (see Registered)."""
        await self._pool.execute("UPDATE clusters SET removing_at = now() WHERE name = $1", cluster)
        async with _transaction(self._pool) as conn:
            await conn.execute("DELETE FROM clusters WHERE name = $1", cluster)
            await _mark_in_flight(conn)
            deleted = await _delete_logged(conn, _DELETE_WHERE.format(cond="cluster = $1"), cluster)
            await conn.execute(
                "DELETE FROM snapshot_seen WHERE cluster = $1", cluster)
            await conn.execute("DELETE FROM snapshots WHERE cluster = $1", cluster)
            await conn.execute("DELETE FROM sync_state WHERE cluster = $1", cluster)
        return deleted


@dataclass(kw_only=True, slots=True)
class Snapshot:
    store: Store
    cluster: str
    rtype: ResourceType
    snapshot_id: int
    count: int = 0

    async def add(self, items: Sequence[Any], *, keep_secret_data: bool = False) -> PageResult:
        result = await self.store.snapshot_page(
            cluster=self.cluster, rtype=self.rtype, snapshot_id=self.snapshot_id, items=items,
            keep_secret_data=keep_secret_data)
        self.count += result.accepted
        return result

    async def end(self, resource_version: str) -> SnapshotResult:
        return await self.store.snapshot_end(
            cluster=self.cluster, rtype=self.rtype, snapshot_id=self.snapshot_id,
            resource_version=resource_version, count=self.count)


# -- decoding and validation (in a worker thread) ---------------------------------------

# Objects may come as their JSON (``bytes``: pull mode's informers keep them so, and large
# request bodies arrive so): they are decoded where they are validated, away from the event
# loop (``syncer.decoding``), never on it, where a page would stop it for as long as it takes.

def _decoded(value: Any, *, what: str) -> Any:
    return decode_json(value, what=what) if isinstance(value, bytes) else value


def _to_rows(items: Sequence[Any], *, rtype: ResourceType, keep_secret_data: bool,
             omitted: Sequence[Any]) -> Page:
    objects = [_decoded(item, what=f"item {index}") for index, item in enumerate(items)]
    return to_rows(objects, rtype=rtype, keep_secret_data=keep_secret_data, omitted=omitted)


def _to_events(events: Sequence[Any], *, rtype: ResourceType, keep_secret_data: bool) -> Batch:
    decoded = [{**event, "object": _decoded(event["object"], what=f"item {index}")}
               if isinstance(event, dict) and isinstance(event.get("object"), bytes) else event
               for index, event in enumerate(events)]
    return to_events(decoded, rtype=rtype, keep_secret_data=keep_secret_data)


# -- SQL -------------------------------------------------------------------------------------

_LOG_DELETED = """
INSERT INTO change_log (seq, cluster, grp, version, resource, kind, namespace, name, uid,
                        resource_version, type, object)
SELECT nextval('change_seq'), cluster, grp, version, resource, kind, namespace, name, uid,
       resource_version, 'DELETED', object
FROM (SELECT * FROM gone ORDER BY namespace, name) AS g
"""

# The keys not seen are found by a set difference, which PostgreSQL computes in one pass
# over each side (hashed or sorted), whatever it expects of them. As an anti join it depended
# on an estimate it cannot make: ``snapshot_seen`` is filled and emptied between its
# statistics, which never describe the snapshot being closed, and expecting one key seen,
# the planner chose a nested loop comparing every row of the type with every key seen
# (N x N: 35 s of CPU to close a snapshot of 27k pods). MATERIALIZED: computed once, also
# when the planner expects no rows of the cluster (a cluster newer than the statistics)
# and would otherwise compute the difference again for each row it deletes from.
_DELETE_UNSEEN = f"""
WITH unseen AS MATERIALIZED (
    SELECT namespace, name FROM resources WHERE cluster = $1 AND grp = $2 AND resource = $3
    EXCEPT
    SELECT namespace, name FROM snapshot_seen WHERE cluster = $1 AND snapshot_id = $4
), gone AS (
    DELETE FROM resources r USING unseen u
    WHERE r.cluster = $1 AND r.grp = $2 AND r.resource = $3 AND r.namespace = u.namespace
      AND r.name = u.name
    RETURNING r.*
), logged AS ({_LOG_DELETED} RETURNING seq)
SELECT count(*) AS n, max(seq) AS last FROM logged
"""

_DELETE_WHERE = (
    "WITH gone AS (DELETE FROM resources WHERE {cond} RETURNING *),"
    f" logged AS ({_LOG_DELETED} RETURNING seq) SELECT count(*) AS n, max(seq) AS last FROM logged"
)

# One primary-key probe per key. LIMIT keeps the subquery from being flattened into a join
# that stale statistics (a table that just grew from empty) can turn into a full scan per key.
_STORED = """
SELECT k.ns AS namespace, k.n AS name, r.uid, r.resource_version, r.version, r.kind
FROM unnest($4::text[], $5::text[]) AS k(ns, n)
CROSS JOIN LATERAL (
    SELECT uid, resource_version, version, kind FROM resources
    WHERE cluster = $1 AND grp = $2 AND resource = $3 AND namespace = k.ns AND name = k.n
    LIMIT 1
) AS r
"""

_DELETE_KEYS = """
DELETE FROM resources r
WHERE (r.cluster, r.grp, r.resource, r.namespace, r.name, r.uid) IN (
    SELECT $1, $2, $3, k.ns, k.n, k.u FROM unnest($4::text[], $5::text[], $6::text[]) AS k(ns, n, u))
"""

def _merge(*, numbers: str, source: str) -> str:
    """The staged rows merged into ``resources``, each with its number from ``numbers`` (an
    SQL expression: the write's numbers, in its entries' order)."""
    return f"""
INSERT INTO resources AS r (cluster, grp, version, resource, kind, namespace, name, uid,
    resource_version, owner_uid, labels, created_at, deleted_at, seq, object)
SELECT $1, $2, $3, $4, $5, s.namespace, s.name, s.uid, s.resource_version, s.owner_uid,
       s.labels, s.created_at, s.deleted_at, ({numbers})[s.ord + 1], s.object
FROM {source}
ON CONFLICT (cluster, grp, resource, namespace, name) DO UPDATE SET
    version = EXCLUDED.version, kind = EXCLUDED.kind, uid = EXCLUDED.uid,
    resource_version = EXCLUDED.resource_version, owner_uid = EXCLUDED.owner_uid,
    labels = EXCLUDED.labels, created_at = EXCLUDED.created_at,
    deleted_at = EXCLUDED.deleted_at, seq = EXCLUDED.seq, object = EXCLUDED.object
"""


# The staged rows merged with the write's numbers ($6): what an update-only write falls back
# to should a row have gone meanwhile.
_MERGE = _merge(numbers="$6::bigint[]", source="staging s")

# A numbered write as one statement, so that the write is in flight (its marker held, the
# horizon held back) for one round trip and the commit: ``numbers`` marks the transaction
# in flight and draws the write's numbers (migration 18), the staged log entries take them
# by offset, and the staged rows take their entries'. An entry's time is when its numbers
# were drawn, so that times follow numbers as closely as writers that draw freely allow.
# Sub-statements of a WITH see one snapshot, so before-images read from ``resources`` are the
# rows as they were before this statement rewrote them. Parameters: cluster, group,
# version, resource, kind, how many numbers, the notice channel.
_NUMBERS = "numbers AS MATERIALIZED (SELECT change_log_numbers($6, $7) AS n, clock_timestamp() AS at)"
_LOGGED = """logged AS (
INSERT INTO change_log (seq, cluster, grp, version, resource, kind, namespace, name, uid,
                        resource_version, type, at, object)
SELECT n.n[l.seq + 1], $1, $2, coalesce(l.version, $3), $4, coalesce(l.kind, $5), l.namespace, l.name,
       l.uid, l.resource_version, l.type, n.at,
       CASE WHEN l.object IS NOT NULL OR l.type = 'ADDED' THEN l.object
            ELSE (SELECT r.object FROM resources r
                  WHERE r.cluster = $1 AND r.grp = $2 AND r.resource = $4
                    AND r.namespace = l.namespace AND r.name = l.name) END
FROM log_staging l CROSS JOIN numbers n)"""
_WRITE_LOG = f"WITH {_NUMBERS}, {_LOGGED} SELECT n AS numbers, 0 AS written FROM numbers"
_WRITE_UPDATE = f"""WITH {_NUMBERS}, {_LOGGED}, written AS (
UPDATE resources AS r SET version = $3, kind = $5, uid = s.uid, resource_version = s.resource_version,
    owner_uid = s.owner_uid, labels = s.labels, created_at = s.created_at, deleted_at = s.deleted_at,
    seq = n.n[s.ord + 1], object = s.object
FROM staging s CROSS JOIN numbers n
WHERE r.cluster = $1 AND r.grp = $2 AND r.resource = $4 AND r.namespace = s.namespace AND r.name = s.name
RETURNING 1)
SELECT (SELECT n FROM numbers) AS numbers, (SELECT count(*) FROM written) AS written"""
_WRITE_MERGE = f"""WITH {_NUMBERS}, {_LOGGED}, written AS (
{_merge(numbers="n.n", source="staging s CROSS JOIN numbers n")}
RETURNING 1)
SELECT (SELECT n FROM numbers) AS numbers, (SELECT count(*) FROM written) AS written"""


async def _lock_state(conn: asyncpg.Connection, *, cluster: str, rtype: ResourceType,
                      shared: bool, quota: Quota) -> str | None:
    """Lock the type's sync state, created if new (within the types quota): one writer per
    (cluster, type), or (``shared``) any number of snapshot pages, which touch disjoint
    objects, and no one else."""
    select = ("SELECT checkpoint FROM sync_state WHERE cluster = $1 AND grp = $2 AND resource = $3"
              + (" FOR KEY SHARE" if shared else " FOR UPDATE"))
    row = await conn.fetchrow(select, cluster, rtype.group, rtype.resource)
    if row is None:
        if not await _admit_type(conn, cluster=cluster, rtype=rtype, quota=quota, phase="listing"):
            raise QuotaExceeded(f"cluster {cluster} syncs {quota.types} types, its limit;"
                                f" {rtype.key} is not synced", new_type=True)
        await conn.execute("UPDATE clusters SET last_error = NULL WHERE name = $1 AND last_error IS NOT NULL",
                           cluster)
        row = await conn.fetchrow(select, cluster, rtype.group, rtype.resource)
        assert row is not None
    checkpoint: str | None = row["checkpoint"]
    return checkpoint


async def _one_page_at_a_time(conn: asyncpg.Connection, *, cluster: str, rtype: ResourceType) -> None:
    """From here to commit, the only page of its snapshot writing ``resources`` (the type's
    row FOR NO KEY UPDATE: the KEY SHARE that pages hold let them this far together). The
    summaries triggers keep per cluster, type, namespace and image (migrations 12-14) lock
    their rows in the order of each statement's rows, and two writers of one type could take
    the same keys in opposite orders and deadlock. Every other writer of a type holds its row
    FOR UPDATE throughout; other types and clusters write at once."""
    await conn.execute(
        "SELECT 1 FROM sync_state WHERE cluster = $1 AND grp = $2 AND resource = $3 FOR NO KEY UPDATE",
        cluster, rtype.group, rtype.resource)


async def _admit_type(conn: asyncpg.Connection, *, cluster: str, rtype: ResourceType, quota: Quota,
                      phase: str, error: str | None = None) -> bool:
    """Create a type's sync state unless the cluster has its quota of types; True if it
    exists now (also when another writer just created it)."""
    await conn.execute(
        "INSERT INTO sync_state (cluster, grp, resource, version, kind, namespaced, phase, last_error)"
        " SELECT $1, $2, $3, $4, $5, $6, $7, $8"
        " WHERE (SELECT count(*) FROM sync_state WHERE cluster = $1) < $9 ON CONFLICT DO NOTHING",
        cluster, rtype.group, rtype.resource, rtype.version, rtype.kind, rtype.namespaced, phase, error,
        quota.types)
    found = await conn.fetchval(
        "SELECT 1 FROM sync_state WHERE cluster = $1 AND grp = $2 AND resource = $3",
        cluster, rtype.group, rtype.resource)
    return found is not None


async def _see(conn: asyncpg.Connection, *, cluster: str, snapshot_id: int,
               keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Mark keys as seen by a snapshot; returns those it had not seen yet."""
    if not keys:
        return set()
    rows = await conn.fetch(
        "INSERT INTO snapshot_seen (cluster, snapshot_id, namespace, name)"
        " SELECT $1, $2, ns, n FROM unnest($3::text[], $4::text[]) AS k(ns, n)"
        " ON CONFLICT DO NOTHING RETURNING namespace, name",
        cluster, snapshot_id, [k[0] for k in keys], [k[1] for k in keys])
    return {(r["namespace"], r["name"]) for r in rows}


async def _record_skips(conn: asyncpg.Connection, *, cluster: str, rtype: ResourceType,
                        skipped: Sequence[Skip]) -> None:
    """Count skipped objects and name them in the type's last error (kept until a snapshot
    without skips ends)."""
    if not skipped:
        return
    more = f"; and {len(skipped) - 1} more" if len(skipped) > 1 else ""
    message = storable(f"skipped {skipped[0].message}{more}")
    log.warning("objects skipped", extra={"cluster": cluster, "type": rtype.key, "skipped": len(skipped),
                                          "error": message})
    await conn.execute(
        "UPDATE sync_state SET skipped = skipped + $4, last_error = $5, updated_at = now()"
        " WHERE cluster = $1 AND grp = $2 AND resource = $3",
        cluster, rtype.group, rtype.resource, len(skipped), message)


async def _snapshot_open(
    conn: asyncpg.Connection, *, cluster: str, rtype: ResourceType, snapshot_id: int
) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM snapshots WHERE cluster = $2 AND id = $1 AND grp = $3 AND resource = $4",
        snapshot_id, cluster, rtype.group, rtype.resource)
    return found is not None


async def _check_snapshot(
    conn: asyncpg.Connection, *, cluster: str, rtype: ResourceType, snapshot_id: int
) -> None:
    if not await _snapshot_open(conn, cluster=cluster, rtype=rtype, snapshot_id=snapshot_id):
        raise _not_open(cluster=cluster, rtype=rtype, snapshot_id=snapshot_id)


def _not_open(*, cluster: str, rtype: ResourceType, snapshot_id: int) -> SnapshotLost:
    return SnapshotLost(f"snapshot {snapshot_id} of {cluster}/{rtype.key} is not open; list again")


async def _close_snapshot(conn: asyncpg.Connection, *, cluster: str, rtype: ResourceType,
                          snapshot_id: int, checkpoint: str) -> int:
    await _mark_in_flight(conn)
    deleted = await _delete_logged(conn, _DELETE_UNSEEN, cluster, rtype.group, rtype.resource, snapshot_id)
    await _drop_snapshots(conn, cluster=cluster, rtype=rtype)
    await _advance(conn, cluster=cluster, rtype=rtype, checkpoint=checkpoint, delta=-deleted, touched=True)
    return deleted


async def _drop_snapshots(conn: asyncpg.Connection, *, cluster: str, rtype: ResourceType) -> None:
    ids = await conn.fetch(
        "DELETE FROM snapshots WHERE cluster = $1 AND grp = $2 AND resource = $3 RETURNING id",
        cluster, rtype.group, rtype.resource)
    if ids:
        await conn.execute(
            "DELETE FROM snapshot_seen WHERE cluster = $1 AND snapshot_id = ANY($2::bigint[])",
            cluster, [r["id"] for r in ids])


async def _stored(
    conn: asyncpg.Connection, *, cluster: str, rtype: ResourceType, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], StoredState]:
    keys = list(keys)
    if not keys:
        return {}
    rows = await conn.fetch(_STORED, cluster, rtype.group, rtype.resource,
                            [k[0] for k in keys], [k[1] for k in keys])
    return {
        (r["namespace"], r["name"]): StoredState(
            uid=r["uid"], resource_version=r["resource_version"], version=r["version"],
            kind=r["kind"])
        for r in rows
    }


# Statistics older than the table's growth: until autovacuum's next round (a minute or
# more), the planner believes a table that grew from empty is tiny, and probes a page's keys
# through an index that matches only (grp, resource) (resources_created_at), scanning every
# row of the type for each key: 1 s a page of 500 pods at 1,500 rows. The table's size is read
# from the table itself: the row counters of pg_stat_user_tables reach it up to a second
# late, which is several pages, and counted from a first threshold of 1,000 rows.
_STALE_STATISTICS = """
SELECT pg_relation_size(c.oid) > 2 * c.relpages::bigint * current_setting('block_size')::bigint + $1
FROM pg_class c WHERE c.oid = 'resources'::regclass
"""
STATISTICS_SLACK = 64 * 1024  # bytes of growth past twice the analyzed size that wait for the next page


async def _refresh_statistics(pool: asyncpg.Pool) -> None:
    """ANALYZE the key columns of ``resources`` when it has more than doubled since the
    last statistics (so a few times while a large cluster's first snapshot grows it)."""
    async with pool.acquire() as conn:
        if not await conn.fetchval(_STALE_STATISTICS, STATISTICS_SLACK):
            return
        async with conn.transaction():
            if await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", ANALYZE_LOCK):
                log.info("refreshing planner statistics of resources")
                await conn.execute(
                    "ANALYZE resources (cluster, grp, resource, namespace, name, uid, owner_uid, created_at)")


# When the running write transaction marked itself in flight (None: it has not). A context
# variable: a transaction and its marker belong to one task.
_IN_FLIGHT_SINCE: ContextVar[float | None] = ContextVar("change_log_in_flight_since", default=None)


@asynccontextmanager
async def _transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A write transaction on a pooled connection, timed (``syncer.metrics``): the wait for
    the connection, the transaction's length, and how long it was in flight in the change
    log (from its marker to its end), which is how long it held back the horizon."""
    asked = time.perf_counter()
    async with pool.acquire() as conn:
        started = time.perf_counter()
        metrics.CONNECTION_WAIT.observe(started - asked)
        token = _IN_FLIGHT_SINCE.set(None)
        try:
            async with conn.transaction():
                yield conn
        finally:
            ended = time.perf_counter()
            marked = _IN_FLIGHT_SINCE.get()
            _IN_FLIGHT_SINCE.reset(token)
            metrics.WRITE_TRANSACTION.observe(ended - started)
            if marked is not None:
                metrics.IN_FLIGHT.observe(ended - marked)


def _marked() -> None:
    """The running transaction is in flight in the change log from now (its first marker)."""
    if _IN_FLIGHT_SINCE.get() is None:
        _IN_FLIGHT_SINCE.set(time.perf_counter())


async def _mark_in_flight(conn: asyncpg.Connection) -> None:
    """Mark the transaction in flight before a statement that draws numbers with ``nextval``
    itself (the logged deletes); ``_write_numbered``'s statement marks its own."""
    _marked()
    await conn.execute("SELECT change_log_mark()")


async def _write_numbered(conn: asyncpg.Connection, statement: str, *, cluster: str, rtype: ResourceType,
                          how_many: int) -> asyncpg.Record:
    """Run one of the ``_WRITE_*`` statements: it marks the transaction in flight, draws
    ``how_many`` numbers (the newest is notified at commit) and writes the staged entries and
    rows with them; returns the numbers and the rows written."""
    _marked()
    row: asyncpg.Record | None = await conn.fetchrow(
        statement, cluster, rtype.group, rtype.version, rtype.resource, rtype.kind, how_many, NOTIFY_CHANNEL)
    assert row is not None
    return row


async def _notify(conn: asyncpg.Connection, last: int) -> None:
    """Wake aggregated watches: delivered at commit; the payload is only the newest sequence
    number (NOTIFY payloads are small), a hint: smaller numbers may still be in flight, so
    readers fetch the changes up to the horizon (``apiserver.horizon``)."""
    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(last))


async def _delete_logged(conn: asyncpg.Connection, sql: str, *args: Any) -> int:
    """Run one of the DELETE ... RETURNING -> change_log statements; notify if it logged."""
    row = await conn.fetchrow(sql, *args)
    assert row is not None
    if row["n"]:
        await _notify(conn, row["last"])
    return int(row["n"])


async def _write(conn: asyncpg.Connection, *, cluster: str, rtype: ResourceType, plan: Plan) -> None:
    """Write a plan: numbered change-log entries, upserts, deletes. Everything that needs no
    number is sent before the numbered statement; after it, only the deletes of a batch that
    has any."""
    if not plan.log:
        return
    if plan.upserts:
        # Parsing the objects into jsonb is most of the work: done before the write is in
        # flight, it does not hold back the horizon.
        await conn.copy_records_to_table(
            "staging", columns=STAGING_COLUMNS, records=_staging_records(plan.upserts))
    await conn.copy_records_to_table(
        "log_staging", columns=LOG_STAGING_COLUMNS, records=_log_staging_records(plan.log))
    # Update-only batches (status updates, a relist of what is stored) write their rows
    # with a plain UPDATE: PostgreSQL computes each row's generated columns once, where
    # INSERT .. ON CONFLICT computes them for the row it proposes and again for the row it
    # updates, and it fires no INSERT triggers.
    if not plan.upserts:
        statement = _WRITE_LOG
    else:
        statement = _WRITE_MERGE if plan.inserts else _WRITE_UPDATE
    done = await _write_numbered(conn, statement, cluster=cluster, rtype=rtype, how_many=len(plan.log))
    if plan.upserts and not plan.inserts and done["written"] != len(plan.upserts):
        # A row gone meanwhile (no writer of this type does that under our locks): the
        # merge writes what is left; rewriting a row with the same values changes nothing.
        await conn.execute(_MERGE, cluster, rtype.group, rtype.version, rtype.resource, rtype.kind,
                           done["numbers"])
    if plan.deletes:
        await conn.execute(
            _DELETE_KEYS, cluster, rtype.group, rtype.resource,
            [c.namespace for c in plan.deletes], [c.name for c in plan.deletes],
            [c.uid for c in plan.deletes])


def _log_staging_records(entries: Sequence[LogEntry]) -> Iterable[tuple[Any, ...]]:
    """Change-log entries as staged before their numbers are known: each with its offset
    among the write's numbers, its version and kind when they are not the type's, and its
    before-image when the batch carries it."""
    for offset, c in enumerate(entries):
        yield (offset, c.version or None, c.kind or None, c.namespace, c.name, c.uid, c.resource_version,
               c.type, c.before)


def _staging_records(upserts: Sequence[tuple[int, Row]]) -> Iterable[tuple[Any, ...]]:
    for ord_, row in upserts:
        yield (ord_, row.namespace, row.name, row.uid, row.resource_version, row.owner_uid,
               row.labels, row.created_at, row.deleted_at, row.object)


async def _adjust_count(conn: asyncpg.Connection, *, cluster: str, rtype: ResourceType,
                        delta: int) -> None:
    if delta:
        await conn.execute(
            "UPDATE sync_state SET object_count = object_count + $4, last_event_at = now(),"
            " updated_at = now() WHERE cluster = $1 AND grp = $2 AND resource = $3",
            cluster, rtype.group, rtype.resource, delta)


async def _advance(conn: asyncpg.Connection, *, cluster: str, rtype: ResourceType,
                   checkpoint: str | None, delta: int, touched: bool) -> None:
    await conn.execute(
        "UPDATE sync_state SET checkpoint = coalesce($4, checkpoint), phase = 'watching',"
        " object_count = object_count + $5, updated_at = now(),"
        " last_error = CASE WHEN skipped > 0 THEN last_error END,"
        " last_event_at = CASE WHEN $6 THEN now() ELSE last_event_at END"
        " WHERE cluster = $1 AND grp = $2 AND resource = $3",
        cluster, rtype.group, rtype.resource, checkpoint, delta, touched)


__all__ = ["BadInput", "BatchResult", "CheckpointMismatch", "Event", "FenceLost", "Guard", "Owner",
           "PageResult", "QuotaExceeded", "Registered", "Snapshot", "SnapshotLost", "SnapshotResult", "Store",
           "advisory_holder"]
