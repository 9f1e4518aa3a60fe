"""The images report's summary (``pod_image_use``, migration 13) stays exact on every write.

After each kind of write through the ingest core (watch batches that add, change, keep and
delete pods, snapshots that merge and delete, a type's and a cluster's removal, concurrent
writers of different clusters) the summary must equal a plain Python count over the pods
the store holds: per cluster, namespace and image, the pods that declare it (once, however
many of its containers do) and their containers with it, leaving out the pods whose images
are too long to index. The migration's fill of an existing store is checked the same way.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import asyncpg
import orjson

from syncer.db import connect, create_pool
from syncer.ingest import Store
from syncer.migrations import MIGRATIONS, POD_IMAGES_MAX_BYTES, migrate
from syncer.migrations_ingest import IN_FLIGHT_MARKERS, TAKE_CHANGE_NUMBERS
from tests.apiserver.reporting import pod_images
from tests.factories import NODES, PODS, event, pod

Key = tuple[str, str, str]
Summary = dict[Key, tuple[int, int]]
WIDE = "registry.example.com/" + "w" * 120 + ":1"  # 24 of them pass POD_IMAGES_MAX_BYTES


def _pod(name: str, rv: int, *images: str, namespace: str = "default", init: tuple[str, ...] = (),
         **extra: Any) -> dict[str, Any]:
    obj = pod(name, rv, namespace=namespace, **extra)
    obj["spec"]["containers"] = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    if init:
        obj["spec"]["initContainers"] = [{"name": f"i{i}", "image": image} for i, image in enumerate(init)]
    return obj


def _indexed(images: list[str]) -> bool:
    """As kube_pod_images bounds ``pod_images`` (4 bytes an image besides its own)."""
    return sum(len(i.encode()) + 4 for i in images) <= POD_IMAGES_MAX_BYTES


async def expected(pool: asyncpg.Pool) -> Summary:
    """Counted in Python from the pods' objects as the store holds them."""
    pods: Counter[Key] = Counter()
    containers: Counter[Key] = Counter()
    for row in await pool.fetch("SELECT cluster, namespace, object::text AS obj FROM resources"
                                " WHERE grp = '' AND resource = 'pods'"):
        images = pod_images(orjson.loads(row["obj"]))
        if not _indexed(images):
            continue
        for image in set(images):
            pods[(row["cluster"], row["namespace"], image)] += 1
        for image in images:
            containers[(row["cluster"], row["namespace"], image)] += 1
    return {key: (pods[key], n) for key, n in containers.items()}


async def summary(pool: asyncpg.Pool) -> Summary:
    rows = await pool.fetch("SELECT cluster, namespace, image, pods, containers FROM pod_image_use")
    return {(r["cluster"], r["namespace"], r["image"]): (r["pods"], r["containers"]) for r in rows}


async def _exact(pool: asyncpg.Pool) -> Summary:
    found = await summary(pool)
    assert found == await expected(pool)
    assert all(pods > 0 for pods, _ in found.values()), "a key no pod uses is deleted"
    return found


async def _versions(pool: asyncpg.Pool) -> dict[Key, tuple[str, str]]:
    """Each summary row's physical version: unchanged when nothing wrote it."""
    rows = await pool.fetch("SELECT cluster, namespace, image, ctid::text AS ctid, xmin::text AS xmin"
                            " FROM pod_image_use")
    return {(r["cluster"], r["namespace"], r["image"]): (r["ctid"], r["xmin"]) for r in rows}


def _fleet(rv: int = 1) -> list[dict[str, Any]]:
    return [
        _pod("web-1", rv, "nginx:1.27", "envoy:1.30"),
        _pod("web-2", rv, "nginx:1.27", "envoy:1.30"),
        _pod("twice", rv, "nginx:1.27", "nginx:1.27", init=("busybox:1.36",)),  # one pod, two containers
        _pod("api-1", rv, "api:2", init=("busybox:1.36",), namespace="payments"),
        _pod("wide", rv, *[WIDE] * 24, namespace="payments"),  # too long to index: not summarized
        _pod("empty", rv),  # no containers
    ]


async def test_watch_batches_keep_the_summary_exact(store: Store, pool: asyncpg.Pool) -> None:
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", p) for p in _fleet()])
    found = await _exact(pool)
    assert found[("c1", "default", "nginx:1.27")] == (3, 4)
    assert found[("c1", "default", "busybox:1.36")] == (1, 1)
    assert not [k for k in found if k[2] == WIDE]

    # Images change: one pod moves to a new image, one drops a duplicate, one gets too wide.
    await store.apply_batch(cluster="c1", rtype=PODS, events=[
        event("MODIFIED", _pod("web-1", 2, "nginx:1.28", "envoy:1.30")),
        event("MODIFIED", _pod("twice", 3, "nginx:1.27", init=("busybox:1.36",))),
        event("MODIFIED", _pod("api-1", 4, *[WIDE] * 24, namespace="payments")),
    ])
    found = await _exact(pool)
    assert found[("c1", "default", "nginx:1.27")] == (2, 2)
    assert ("c1", "payments", "api:2") not in found

    # Back under the bound, and deletions: keys no pod uses any more are gone.
    await store.apply_batch(cluster="c1", rtype=PODS, events=[
        event("MODIFIED", _pod("api-1", 5, "api:3", namespace="payments")),
        event("DELETED", _pod("web-2", 6, "nginx:1.27", "envoy:1.30")),
        event("DELETED", _pod("twice", 7, "nginx:1.27", init=("busybox:1.36",))),
    ])
    found = await _exact(pool)
    assert ("c1", "default", "nginx:1.27") not in found and ("c1", "default", "busybox:1.36") not in found
    assert found[("c1", "payments", "api:3")] == (1, 1)


async def test_a_change_that_keeps_images_writes_nothing(store: Store, pool: asyncpg.Pool) -> None:
    """Status updates (most of a watch's traffic) leave every pod's images as they were: the
    summary's rows keep their physical version."""
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", p) for p in _fleet()])
    before = await _versions(pool)
    await store.apply_batch(cluster="c1", rtype=PODS, events=[
        event("MODIFIED", {**p, "status": {"phase": "Succeeded"}}) for p in _fleet(rv=2)])
    async with store.snapshot(cluster="c1", rtype=PODS) as snap:  # a relist of the same pods
        await snap.add(_fleet(rv=3))
        await snap.end("3")
    assert await _versions(pool) == before
    await _exact(pool)


async def test_a_pod_of_the_same_name_in_another_namespace(store: Store, pool: asyncpg.Pool) -> None:
    """A pod's namespace is part of its key: a pod "moving" is one deleted and one added."""
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", _pod("p", 1, "a:1"))])
    await store.apply_batch(cluster="c1", rtype=PODS, events=[
        event("DELETED", _pod("p", 2, "a:1")), event("ADDED", _pod("p", 3, "a:1", namespace="other"))])
    assert await _exact(pool) == {("c1", "other", "a:1"): (1, 1)}


async def test_snapshots_keep_the_summary_exact(store: Store, pool: asyncpg.Pool) -> None:
    """A relist merges pages (insert or update) and deletes what it did not see."""
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", p) for p in _fleet()])
    relisted = [_pod("web-1", 9, "nginx:1.29"), _pod("new", 9, "nginx:1.29", "envoy:1.30"),
                _pod("api-1", 9, "api:2", init=("busybox:1.36",), namespace="payments")]
    async with store.snapshot(cluster="c1", rtype=PODS) as snap:
        await snap.add(relisted[:2])
        await snap.add(relisted[2:])
        await snap.end("9")
    assert await _exact(pool) == {("c1", "default", "nginx:1.29"): (2, 2),
                                  ("c1", "default", "envoy:1.30"): (1, 1),
                                  ("c1", "payments", "api:2"): (1, 1),
                                  ("c1", "payments", "busybox:1.36"): (1, 1)}


async def test_removals_and_truncation_keep_the_summary_exact(store: Store, pool: asyncpg.Pool) -> None:
    for cluster in ("c1", "c2", "c3"):
        await pool.execute("INSERT INTO clusters (name, mode) VALUES ($1, 'push')", cluster)
        await store.apply_batch(cluster=cluster, rtype=PODS, events=[event("ADDED", p) for p in _fleet()])
        await store.apply_batch(cluster=cluster, rtype=NODES, events=[
            event("ADDED", {"apiVersion": "v1", "kind": "Node",
                            "metadata": {"name": "n", "uid": f"{cluster}-n", "resourceVersion": "1"}})])
    await store.remove_type(cluster="c1", rtype=PODS)
    assert {k[0] for k in await _exact(pool)} == {"c2", "c3"}
    await store.remove_cluster(cluster="c2")
    assert {k[0] for k in await _exact(pool)} == {"c3"}
    await pool.execute("TRUNCATE resources")  # no write path does; an operator might
    assert await summary(pool) == {}


async def test_concurrent_writers_of_different_clusters(store: Store, pool: asyncpg.Pool) -> None:
    async def sync(cluster: str) -> None:
        for rv in range(1, 6):
            pods = [_pod(f"p-{i}", rv * 100 + i, f"img-{(i + rv) % 7}:1", f"img-{i % 3}:1",
                         namespace=f"ns-{i % 4}") for i in range(40)]
            await store.apply_batch(cluster=cluster, rtype=PODS, events=[
                event("ADDED" if rv == 1 else "MODIFIED", p) for p in pods])
        await store.apply_batch(cluster=cluster, rtype=PODS, events=[
            event("DELETED", _pod(f"p-{i}", 1000 + i, namespace=f"ns-{i % 4}")) for i in range(0, 40, 3)])

    await asyncio.gather(*(sync(f"c{n}") for n in range(6)))
    found = await _exact(pool)
    assert {k[0] for k in found} == {f"c{n}" for n in range(6)}


async def test_the_migration_fills_the_summary_from_the_rows(pg_server_url: str) -> None:
    """A store written before migration 13 gets its summary from the rows it holds."""
    admin = await connect(pg_server_url)
    await admin.execute("DROP DATABASE IF EXISTS kp_summary_fill")
    await admin.execute("CREATE DATABASE kp_summary_fill")
    url = pg_server_url.rsplit("/", 1)[0] + "/kp_summary_fill"
    conn = await connect(url)
    try:
        async with conn.transaction():
            for migration in MIGRATIONS:
                if migration.version < 13:
                    for statement in migration.statements:
                        await conn.execute(statement)
                    await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", migration.version)
            # What today's write path calls (migrations 16 and 17, which needs 16's function).
            for statement in (*TAKE_CHANGE_NUMBERS, *IN_FLIGHT_MARKERS):
                await conn.execute(statement)
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            store = Store(pool)
            for cluster in ("c1", "c2"):
                await store.apply_batch(cluster=cluster, rtype=PODS,
                                        events=[event("ADDED", p) for p in _fleet()])
            await migrate(conn)
            found = await _exact(pool)
            assert found[("c2", "default", "nginx:1.27")] == (3, 4)
        finally:
            await pool.close()
    finally:
        await conn.close()
        await admin.execute("DROP DATABASE kp_summary_fill WITH (FORCE)")
        await admin.close()


async def test_no_update_of_resources_keeps_transition_tables(pool: asyncpg.Pool) -> None:
    """A status update must not make PostgreSQL copy every updated row into transition tables
    (migration 14): the update is followed by a row trigger that a condition guards."""
    rows = await pool.fetch(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'resources'::regclass AND NOT tgisinternal"
        " AND (tgtype & 16) <> 0 AND (tgoldtable IS NOT NULL OR tgnewtable IS NOT NULL)")
    assert [r["tgname"] for r in rows] == []
