"""Migrations: idempotent, safe when two processes start at once, refuse a newer schema."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from syncer.db import DatabaseUnreachable, connect
from syncer.ingest import Store
from syncer.migrations import LATEST, MIGRATIONS, SchemaTooNew, current_version, migrate
from tests.factories import PODS, event, pod


async def test_fresh_database_migrates_concurrently(pg_server_url: str) -> None:
    admin = await connect(pg_server_url)
    await admin.execute("DROP DATABASE IF EXISTS kp_mig")
    await admin.execute("CREATE DATABASE kp_mig")
    url = pg_server_url.rsplit("/", 1)[0] + "/kp_mig"
    conns = [await connect(url) for _ in range(4)]
    try:
        found = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(found) == [0, LATEST, LATEST, LATEST], "exactly one applied the migration"
        assert await current_version(conns[0]) == LATEST
        applied = await conns[0].fetchval("SELECT array_agg(version ORDER BY version) FROM schema_version")
        assert applied == [m.version for m in MIGRATIONS]
        assert await migrate(conns[0]) == LATEST, "idempotent"
        tables = {r["t"] for r in await conns[0].fetch(
            "SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public'")}
        assert {"clusters", "resources", "change_log", "sync_state", "snapshots"} <= tables
        indexes = {r["i"] for r in await conns[0].fetch(
            "SELECT indexname AS i FROM pg_indexes WHERE tablename = 'resources'")}
        assert {"resources_uid", "resources_owner_uid", "resources_created_at", "resources_labels",
                "resources_name_trgm", "resources_list_order"} <= indexes
    finally:
        for c in conns:
            await c.close()
        await admin.execute("DROP DATABASE kp_mig WITH (FORCE)")
        await admin.close()


async def test_newer_schema_is_refused(db_url: str) -> None:
    conn = await connect(db_url)
    try:
        await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", LATEST + 1)
        with pytest.raises(SchemaTooNew, match=f"schema is version {LATEST + 1}, newer"):
            await migrate(conn)
    finally:
        await conn.close()


async def test_unreachable_database_names_host_not_password() -> None:
    with pytest.raises(DatabaseUnreachable) as info:
        await connect("postgresql://kp:s3cret@127.0.0.1:9/kubepedia")
    assert "127.0.0.1:9/kubepedia" in str(info.value)
    assert "s3cret" not in str(info.value)


async def test_every_unique_key_of_cluster_data_contains_cluster(db_url: str) -> None:
    """Distribution by cluster (Citus) requires it; so does dropping a cluster's rows alone."""
    conn = await connect(db_url)
    try:
        rows = await conn.fetch("""
            SELECT c.relname AS tbl, i.relname AS idx,
                   array_agg(a.attname::text) AS cols
            FROM pg_index x
            JOIN pg_class c ON c.oid = x.indrelid
            JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(x.indkey)
            WHERE x.indisunique AND c.relnamespace = 'public'::regnamespace
              AND EXISTS (SELECT 1 FROM pg_attribute ca WHERE ca.attrelid = c.oid
                          AND ca.attname = 'cluster')
            GROUP BY c.relname, i.relname""")
    finally:
        await conn.close()
    assert {r["tbl"] for r in rows} >= {"resources", "change_log", "sync_state", "snapshots",
                                        "snapshot_seen"}
    assert [(r["tbl"], r["idx"]) for r in rows if "cluster" not in r["cols"]] == []


async def test_the_metadata_describes_the_migrated_schema(db_url: str) -> None:
    """Migrations are literal SQL; ``syncer.schema`` must say what they leave behind."""
    from syncer import schema

    conn = await connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT table_name AS t, column_name AS c, is_nullable = 'YES' AS nullable"
            " FROM information_schema.columns WHERE table_schema = 'public'")
        indexes = {r["i"] for r in await conn.fetch(
            "SELECT indexname AS i FROM pg_indexes WHERE schemaname = 'public'")}
    finally:
        await conn.close()
    migrated = {(r["t"], r["c"], r["nullable"]) for r in rows}
    described = {(t.name, c.name, bool(c.nullable) and not c.primary_key)
                 for t in schema.metadata.tables.values() for c in t.columns}
    assert migrated == described
    assert {i.name for t in schema.metadata.tables.values() for i in t.indexes} <= indexes


async def test_objects_are_stored_uncompressed_inside_the_row(store: Store, pool: asyncpg.Pool) -> None:
    """A list page reads objects without TOAST lookups or decompression (migration 4)."""
    padded = pod("big", 1)
    padded["metadata"]["annotations"] = {"note": "x" * 5000}  # compresses well: pglz would take it
    huge = pod("huge", 2)
    huge["metadata"]["annotations"] = {"note": "y" * 20000}  # larger than a page: out of line, still raw
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", padded), event("ADDED", huge)])
    rows = await pool.fetch("SELECT name, pg_column_compression(object) AS compression,"
                            " pg_column_size(object) AS size FROM resources ORDER BY name")
    assert [(r["name"], r["compression"]) for r in rows] == [("big", None), ("huge", None)]
    assert rows[0]["size"] > 5000 and rows[1]["size"] > 20000
    toast = await pool.fetchval(
        "SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = 'resources'")
    assert await pool.fetchval(f"SELECT count(DISTINCT chunk_id) FROM {toast}") == 1, "only the huge one"


async def test_before_images_are_not_compressed_with_pglz(store: Store, pool: asyncpg.Pool) -> None:
    """A status update's before-image costs no pglz (migration 15): lz4 where the server has
    it, else stored as the objects are, uncompressed inside the row."""
    padded = pod("big", 1)
    padded["metadata"]["annotations"] = {"note": "x" * 5000}  # compresses well: pglz would take it
    changed = pod("big", 2, phase="Succeeded")
    changed["metadata"]["annotations"] = padded["metadata"]["annotations"]
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", padded)])
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("MODIFIED", changed)])
    row = await pool.fetchrow("SELECT pg_column_compression(object) AS compression,"
                              " pg_column_size(object) AS size FROM change_log WHERE type = 'MODIFIED'")
    assert row is not None and row["compression"] in (None, "lz4")
    if row["compression"] is None:
        assert row["size"] > 5000
        toast = await pool.fetchval(
            "SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = 'change_log'")
        assert await pool.fetchval(f"SELECT count(*) FROM {toast}") == 0, "inside the row"
