"""``resource_keys`` (migration 11) holds exactly the identity, version and container images
(a pod's spec.containers, NULL where its images are too long to index) of every row of
``resources``, whichever way rows come and go: watch events, a relist's pages and its
end, deletions, a type's and a cluster's removal, COPY, a change of stored version and of
a pod's images. Name and image searches read their candidates there (apiserver.query), so
a missing or stale row would hide an object from a search, and an extra one would name an
object that is gone. ``object_counts`` (migration 12), the counts per cluster, type and
namespace the counts report reads, is checked alike."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson

from syncer.ingest import Store
from tests.factories import DEPLOYMENTS, PODS, event, pod

_IDENTITY = "cluster, grp, resource, namespace, name, version"


def _container_images(row: asyncpg.Record) -> tuple[str, ...] | None:
    """What the table should hold for a row of ``resources``, computed here from its object."""
    if (row["grp"], row["resource"]) != ("", "pods") or row["pod_images"] is None:
        return None
    obj: dict[str, Any] = orjson.loads(row["object"])
    containers = (obj.get("spec") or {}).get("containers")
    if not isinstance(containers, list):
        return ()
    return tuple(c["image"] for c in containers if isinstance(c, dict) and isinstance(c.get("image"), str))


async def _assert_mirrored(pool: asyncpg.Pool) -> int:
    rows = {(*tuple(r)[:6], _container_images(r)) for r in await pool.fetch(
        f"SELECT {_IDENTITY}, pod_images, object::text AS object FROM resources")}
    keys = {(*tuple(r)[:6], tuple(r[6]) if r[6] is not None else None) for r in await pool.fetch(
        f"SELECT {_IDENTITY}, container_images FROM resource_keys")}
    missing, extra = sorted(rows - keys, key=str), sorted(keys - rows, key=str)
    assert keys == rows, f"missing {missing[:5]}, extra {extra[:5]}"
    counted = {tuple(r) for r in await pool.fetch(
        "SELECT cluster, grp, resource, namespace, count(*) FROM resources GROUP BY 1, 2, 3, 4")}
    kept = {tuple(r) for r in await pool.fetch("SELECT cluster, grp, resource, namespace, objects"
                                               " FROM object_counts")}
    assert kept == counted, f"counts: missing {counted - kept}, extra {kept - counted}"
    return len(rows)


def _imaged(name: str, rv: int, containers: list[str], init: list[str]) -> dict[str, Any]:
    def listed(prefix: str, images: list[str]) -> list[dict[str, str]]:
        return [{"name": f"{prefix}{i}", "image": image} for i, image in enumerate(images)]
    return pod(name, rv, spec={"containers": listed("c", containers), "initContainers": listed("i", init)})


async def test_keys_follow_every_write_path(store: Store, pool: asyncpg.Pool) -> None:
    for cluster in ("c1", "c2"):
        await pool.execute("INSERT INTO clusters (name, mode) VALUES ($1, 'push')", cluster)
    await store.apply_batch(cluster="c1", rtype=PODS, events=[
        event("ADDED", pod(f"web-{i}", 10 + i, namespace=f"ns{i % 3}")) for i in range(40)])
    await store.apply_batch(cluster="c2", rtype=PODS, events=[
        event("ADDED", pod(f"web-{i}", 10 + i)) for i in range(10)])
    assert await _assert_mirrored(pool) == 50

    # Updates (names do not change), deletions, and a re-creation in one batch.
    await store.apply_batch(cluster="c1", rtype=PODS, events=[
        event("MODIFIED", pod("web-1", 100, namespace="ns1", phase="Failed")),
        event("DELETED", pod("web-2", 101, namespace="ns2")),
        event("DELETED", pod("web-3", 102, namespace="ns0")),
        event("ADDED", pod("web-3", 103, namespace="ns0", uid="recreated"))])
    assert await _assert_mirrored(pool) == 49

    # A pod's images: changed, swapped with an init container's (the pod's set of images
    # stays the same), and too long to index.
    await store.apply_batch(cluster="c2", rtype=PODS, events=[
        event("ADDED", _imaged("img", 50, ["a:1", "b:1"], ["init:1"])),
        event("ADDED", _imaged("long", 51, ["x" * 3000], []))])
    assert await _assert_mirrored(pool) == 51
    for rv, containers, init in ((52, ["a:2", "b:1"], ["init:1"]), (53, ["init:1", "b:1"], ["a:2"])):
        await store.apply_batch(cluster="c2", rtype=PODS, events=[
            event("MODIFIED", _imaged("img", rv, containers, init))])
        assert await _assert_mirrored(pool) == 51
    await store.apply_batch(cluster="c2", rtype=PODS, events=[
        event("DELETED", _imaged("img", 54, [], [])), event("DELETED", _imaged("long", 55, [], []))])
    assert await _assert_mirrored(pool) == 49

    # A relist that no longer holds most of c1's pods: its end deletes them.
    async with store.snapshot(cluster="c1", rtype=PODS) as snap:
        await snap.add([pod(f"web-{i}", 200 + i, namespace=f"ns{i % 3}") for i in range(0, 40, 4)])
        await snap.add([pod("new-one", 300)])
        await snap.end("400")
    assert await _assert_mirrored(pool) == 10 + 11

    # Many rows in one statement (a COPY, as bulk loads write), then a change of stored version.
    await pool.copy_records_to_table(
        "resources", columns=("cluster", "grp", "version", "resource", "kind", "namespace", "name", "uid",
                              "resource_version", "labels", "seq", "object"),
        records=[("c2", "apps", "v1beta1", "deployments", "Deployment", "ns9", f"d-{i}", f"u-{i}", "1",
                  "{}", 1, '{"kind": "Deployment"}') for i in range(500)])
    await pool.execute("UPDATE resources SET version = 'v1' WHERE grp = 'apps' AND name < 'd-2'")
    await pool.execute("UPDATE resources SET resource_version = '2' WHERE grp = 'apps'")  # no version change
    assert await _assert_mirrored(pool) == 21 + 500
    moved = "SELECT count(*) FROM resource_keys WHERE grp = 'apps' AND version = 'v1'"
    assert await pool.fetchval(moved) > 0

    await store.remove_type(cluster="c2", rtype=DEPLOYMENTS)
    await store.remove_cluster(cluster="c1")
    assert await _assert_mirrored(pool) == 10


async def test_keys_follow_concurrent_writers(store: Store, pool: asyncpg.Pool) -> None:
    clusters = [f"c{i}" for i in range(4)]
    for cluster in clusters:
        await pool.execute("INSERT INTO clusters (name, mode) VALUES ($1, 'push')", cluster)

    async def churn(cluster: str) -> None:
        for round_ in range(5):
            await store.apply_batch(cluster=cluster, rtype=PODS, events=[
                event("ADDED" if round_ % 2 == 0 else "DELETED", pod(f"p-{i}", 10 * round_ + i))
                for i in range(20)])

    await asyncio.gather(*(churn(c) for c in clusters))
    assert await _assert_mirrored(pool) == 4 * 20
