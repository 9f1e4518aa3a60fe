"""The ingest core against a real PostgreSQL: batches, replays, snapshots, the change log."""

from __future__ import annotations

import asyncpg
import pytest

from syncer.db import create_pool
from syncer.ingest import (
    CheckpointMismatch,
    FenceLost,
    Owner,
    Registered,
    SnapshotLost,
    Store,
    advisory_holder,
)
from tests.factories import NODES, PODS, SECRETS, bookmark, event, pod


async def _rows(pool: asyncpg.Pool, cluster: str = "c1") -> dict[str, str]:
    rows = await pool.fetch(
        "SELECT namespace, name, resource_version FROM resources WHERE cluster = $1", cluster)
    return {f"{r['namespace']}/{r['name']}": r["resource_version"] for r in rows}


async def _log(pool: asyncpg.Pool) -> list[tuple[str, str, str]]:
    rows = await pool.fetch("SELECT type, name, resource_version FROM change_log ORDER BY seq")
    return [(r["type"], r["name"], r["resource_version"]) for r in rows]


async def test_batch_applies_in_order_with_checkpoint(store: Store, pool: asyncpg.Pool) -> None:
    result = await store.apply_batch(cluster="c1", rtype=PODS, events=[
        event("ADDED", pod("a", 10)), event("ADDED", pod("b", 11)),
        event("MODIFIED", pod("a", 12, phase="Succeeded")), event("DELETED", pod("b", 13)),
    ])
    assert result.applied == 4
    assert result.checkpoint == "13"
    assert await _rows(pool) == {"default/a": "12"}
    assert await _log(pool) == [("ADDED", "a", "10"), ("ADDED", "b", "11"),
                                ("MODIFIED", "a", "12"), ("DELETED", "b", "13")]
    assert await store.checkpoints(cluster="c1") == {"pods": "13"}
    stored = await pool.fetchval("SELECT object FROM resources WHERE name = 'a'")
    assert stored["status"]["phase"] == "Succeeded"
    seqs = [r["seq"] for r in await pool.fetch("SELECT seq FROM change_log ORDER BY seq")]
    assert seqs == list(range(seqs[0], seqs[0] + 4)), "numbers of one commit are contiguous"
    assert await pool.fetchval("SELECT seq FROM resources WHERE name = 'a'") == seqs[2]


async def test_replaying_a_batch_changes_nothing(store: Store, pool: asyncpg.Pool) -> None:
    batch = [event("ADDED", pod("a", 10)), event("MODIFIED", pod("a", 11)), event("ADDED", pod("b", 12))]
    await store.apply_batch(cluster="c1", rtype=PODS, events=batch)
    before_log = await _log(pool)
    before_xmin = await pool.fetch("SELECT name, xmin::text AS x FROM resources ORDER BY name")
    again = await store.apply_batch(cluster="c1", rtype=PODS, events=batch)
    assert again.replayed and again.applied == 0
    assert await _log(pool) == before_log
    assert await pool.fetch("SELECT name, xmin::text AS x FROM resources ORDER BY name") == before_xmin


async def test_overlapping_batch_applies_only_what_is_new(store: Store, pool: asyncpg.Pool) -> None:
    await store.apply_batch(cluster="c1", rtype=PODS,
                            events=[event("ADDED", pod("a", 10)), event("MODIFIED", pod("a", 11))])
    result = await store.apply_batch(cluster="c1", rtype=PODS, events=[
        event("ADDED", pod("a", 10)), event("MODIFIED", pod("a", 11)), event("MODIFIED", pod("a", 14)),
        event("ADDED", pod("c", 15)),
    ])
    assert result.applied == 2
    assert await _log(pool) == [("ADDED", "a", "10"), ("MODIFIED", "a", "11"),
                                ("MODIFIED", "a", "14"), ("ADDED", "c", "15")]


async def test_unchanged_objects_are_not_rewritten(store: Store, pool: asyncpg.Pool) -> None:
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("a", 10))])
    xmin = await pool.fetchval("SELECT xmin::text FROM resources")
    result = await store.apply_batch(cluster="c1", rtype=PODS,
                                     events=[event("MODIFIED", pod("a", 10)), bookmark(20)])
    assert result.applied == 0 and result.checkpoint == "20"
    assert await pool.fetchval("SELECT xmin::text FROM resources") == xmin
    assert await store.checkpoints(cluster="c1") == {"pods": "20"}


async def test_bookmark_only_batch_advances_checkpoint(store: Store, pool: asyncpg.Pool) -> None:
    result = await store.apply_batch(cluster="c1", rtype=PODS, events=[bookmark(99)])
    assert result.applied == 0
    assert await store.checkpoints(cluster="c1") == {"pods": "99"}
    assert await _log(pool) == []


async def test_recreated_object_logs_delete_then_add(store: Store, pool: asyncpg.Pool) -> None:
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("a", 10, uid="u1"))])
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("a", 20, uid="u2"))])
    assert await _log(pool) == [("ADDED", "a", "10"), ("DELETED", "a", "10"), ("ADDED", "a", "20")]
    assert await pool.fetchval("SELECT uid FROM resources") == "u2"


async def test_delete_of_an_older_incarnation_is_ignored(store: Store, pool: asyncpg.Pool) -> None:
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("a", 20, uid="u2"))])
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("DELETED", pod("a", 15, uid="u1"))])
    assert await _rows(pool) == {"default/a": "20"}


async def test_snapshot_deletes_what_it_did_not_see(store: Store, pool: asyncpg.Pool) -> None:
    await store.apply_batch(cluster="c1", rtype=PODS, events=[
        event("ADDED", pod(n, i)) for i, n in enumerate(["a", "b", "c", "d"], start=1)])
    await store.apply_batch(cluster="c2", rtype=PODS, events=[event("ADDED", pod("a", 1))])
    async with store.snapshot(cluster="c1", rtype=PODS) as snap:
        await snap.add([pod("a", 1), pod("b", 7)])
        await snap.add([pod("e", 8)])
        assert await _rows(pool) == {"default/a": "1", "default/b": "7", "default/c": "3",
                                     "default/d": "4", "default/e": "8"}, "pages merge as they come"
        result = await snap.end("9")
    assert result.deleted == 2
    assert await _rows(pool) == {"default/a": "1", "default/b": "7", "default/e": "8"}
    assert await _rows(pool, "c2") == {"default/a": "1"}, "other clusters are untouched"
    assert await store.checkpoints(cluster="c1") == {"pods": "9"}
    log = await _log(pool)
    assert log[-4:] == [("MODIFIED", "b", "7"), ("ADDED", "e", "8"), ("DELETED", "c", "3"),
                        ("DELETED", "d", "4")]
    state = await pool.fetchrow("SELECT phase, object_count FROM sync_state WHERE cluster = 'c1'")
    assert dict(state) == {"phase": "watching", "object_count": 3}


async def test_snapshot_page_replay_is_harmless(store: Store, pool: asyncpg.Pool) -> None:
    snapshot_id = await store.snapshot_start(cluster="c1", rtype=PODS)
    page = [pod("a", 1), pod("b", 2)]
    await store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=snapshot_id, items=page)
    await store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=snapshot_id, items=page)
    result = await store.snapshot_end(cluster="c1", rtype=PODS, snapshot_id=snapshot_id,
                                      resource_version="3", count=2)
    assert result.deleted == 0
    assert len(await _log(pool)) == 2


async def test_snapshot_with_missing_pages_deletes_nothing(store: Store, pool: asyncpg.Pool) -> None:
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("a", 1))])
    snapshot_id = await store.snapshot_start(cluster="c1", rtype=PODS)
    await store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=snapshot_id, items=[pod("b", 2)])
    with pytest.raises(SnapshotLost):
        await store.snapshot_end(cluster="c1", rtype=PODS, snapshot_id=snapshot_id,
                                 resource_version="5", count=2)
    assert await _rows(pool) == {"default/a": "1", "default/b": "2"}
    assert await store.checkpoints(cluster="c1") == {"pods": "1"}
    with pytest.raises(SnapshotLost):
        await store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=snapshot_id, items=[])


async def test_new_snapshot_supersedes_an_open_one(store: Store) -> None:
    old = await store.snapshot_start(cluster="c1", rtype=PODS)
    new = await store.snapshot_start(cluster="c1", rtype=PODS)
    with pytest.raises(SnapshotLost):
        await store.snapshot_end(cluster="c1", rtype=PODS, snapshot_id=old, resource_version="1")
    await store.snapshot_end(cluster="c1", rtype=PODS, snapshot_id=new, resource_version="1", count=0)


async def test_cluster_scoped_objects(store: Store, pool: asyncpg.Pool) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "n-1",
                                                              "resourceVersion": "5"}}
    await store.apply_batch(cluster="c1", rtype=NODES, events=[event("ADDED", node)])
    assert await _rows(pool) == {"/n1": "5"}


async def test_pruning(store: Store, pool: asyncpg.Pool) -> None:
    annotations = {"kubectl.kubernetes.io/last-applied-configuration": "{...}", "keep": "me"}
    obj = pod("a", 1, metadata={"managedFields": [{"manager": "kubectl"}], "annotations": annotations})
    secret = {"apiVersion": "v1", "kind": "Secret", "data": {"password": "aHVudGVyMg=="},
              "type": "Opaque", "metadata": {"name": "s", "namespace": "default", "uid": "s1",
                                              "resourceVersion": "2"}}
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", obj)])
    await store.apply_batch(cluster="c1", rtype=SECRETS, events=[event("ADDED", secret)])
    stored = await pool.fetchval("SELECT object FROM resources WHERE name = 'a'")
    assert "managedFields" not in stored["metadata"]
    assert stored["metadata"]["annotations"] == {"keep": "me"}
    stored_secret = await pool.fetchval("SELECT object FROM resources WHERE name = 's'")
    assert "data" not in stored_secret and stored_secret["type"] == "Opaque"
    await store.apply_batch(cluster="c2", rtype=SECRETS, events=[event("ADDED", secret)],
                            keep_secret_data=True)
    kept = await pool.fetchval("SELECT object FROM resources WHERE cluster = 'c2' AND name = 's'")
    assert kept["data"] == {"password": "aHVudGVyMg=="}


async def test_columns(store: Store, pool: asyncpg.Pool) -> None:
    owned = pod("a", 3, labels={"app": "web", "tier": "front"}, metadata={
        "ownerReferences": [{"uid": "rs-1", "kind": "ReplicaSet", "name": "rs", "controller": True}],
        "deletionTimestamp": "2026-01-03T00:00:00Z"})
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", owned)])
    row = await pool.fetchrow("SELECT * FROM resources")
    assert (row["grp"], row["version"], row["resource"], row["kind"]) == ("", "v1", "pods", "Pod")
    assert row["owner_uid"] == "rs-1"
    assert row["labels"] == {"app": "web", "tier": "front"}
    assert row["created_at"].isoformat() == "2026-01-02T03:04:05+00:00"
    assert row["deleted_at"].isoformat() == "2026-01-03T00:00:00+00:00"


async def test_remove_type_and_cluster(store: Store, pool: asyncpg.Pool) -> None:
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("a", 1))])
    await store.apply_batch(cluster="c1", rtype=SECRETS, events=[event("ADDED", {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s", "namespace": "default", "uid": "s1", "resourceVersion": "2"}})])
    assert await store.remove_type(cluster="c1", rtype=PODS) == 1
    assert await _rows(pool) == {"default/s": "2"}
    assert await store.checkpoints(cluster="c1") == {"secrets": "2"}
    assert await store.remove_cluster(cluster="c1") == 1
    assert await _rows(pool) == {}
    assert [t for t, _, _ in await _log(pool)] == ["ADDED", "ADDED", "DELETED", "DELETED"]


async def test_batch_that_follows_an_older_checkpoint_is_refused(store: Store, pool: asyncpg.Pool) -> None:
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("a", 10))])
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("MODIFIED", pod("a", 11))], after="10")
    with pytest.raises(CheckpointMismatch, match="batch follows '10', the store is at '11'"):
        # A delayed request arriving after its retry and a later batch committed.
        await store.apply_batch(cluster="c1", rtype=PODS, after="10",
                                events=[event("DELETED", pod("a", 12)), event("ADDED", pod("b", 13))])
    assert await _rows(pool) == {"default/a": "11"}
    again = await store.apply_batch(cluster="c1", rtype=PODS, after="10",
                                    events=[event("MODIFIED", pod("a", 11))])
    assert again.replayed, "a replay of the committed batch is still acknowledged"


async def test_ending_a_snapshot_again_is_a_replay(store: Store) -> None:
    snapshot_id = await store.snapshot_start(cluster="c1", rtype=PODS)
    await store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=snapshot_id, items=[pod("a", 1)])
    await store.snapshot_end(cluster="c1", rtype=PODS, snapshot_id=snapshot_id, resource_version="5", count=1)
    again = await store.snapshot_end(cluster="c1", rtype=PODS, snapshot_id=snapshot_id,
                                     resource_version="5", count=1)
    assert (again.deleted, again.checkpoint) == (0, "5")
    with pytest.raises(SnapshotLost):
        await store.snapshot_end(cluster="c1", rtype=PODS, snapshot_id=snapshot_id,
                                 resource_version="6", count=1)


async def test_removal_refuses_new_writes_first(store: Store, pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO clusters (name, mode) VALUES ('c1', 'push')")
    guarded = Store(pool, guards=[Registered(cluster="c1")])
    await guarded.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("a", 1))])
    assert await guarded.remove_cluster(cluster="c1") == 1
    with pytest.raises(FenceLost, match="not registered"):
        await guarded.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("b", 2))])
    assert await _rows(pool) == {}


async def test_advisory_holder_is_per_database(pool: asyncpg.Pool, template_url: str, db_url: str) -> None:
    key = 42_4242
    elsewhere = await asyncpg.connect(template_url)
    here = await asyncpg.connect(db_url)
    try:
        assert await elsewhere.fetchval("SELECT pg_try_advisory_lock($1)", key)
        assert await advisory_holder(pool, key) is None, "a lock in another database is not ours"
        assert await here.fetchval("SELECT pg_try_advisory_lock($1)", key)
        assert await advisory_holder(pool, key) == here.get_server_pid()
        async with pool.acquire() as conn:
            await Owner(key=key, pid=here.get_server_pid()).check(conn)
    finally:
        await elsewhere.close()
        await here.close()


async def test_writer_pool_skips_the_reset_query_but_ends_transactions(db_url: str) -> None:
    """A writer's connection goes back to its pool without the reset query (its session is
    kept as it is), and still never with a transaction open."""
    pool = await create_pool(db_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'kept'")
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE left_open (x int)")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW application_name") == "kept", "no RESET ALL"
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('pg_temp.left_open')") is None, "rolled back"
    finally:
        await pool.close()
