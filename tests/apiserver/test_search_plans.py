"""The searches use an index at a realistic size: the plan PostgreSQL picks, not a timing.

4 clusters, each with 800 Deployments owning a ReplicaSet each, owning 9 pods each
(copies of kubesim's realistic pods, about 4.6 KB), with creation times spread over half
a year and an image per Deployment and cluster (about 300 across the fleet), are copied
into the store (35,200 objects) and vacuumed, as autovacuum leaves an insert-mostly table.
Each search's SQL is composed from its URL parameters the way the read API composes a
pod list (``benchmarks.search.composed_search``: ``apiserver.params`` and
``apiserver.objects.target_of`` parse, ``apiserver.query.list_statement`` composes), and
its plan must read ``resources`` through an index, never a sequential scan: a fuzzy name
(Clusterpedia's ``internalstorage.clusterpedia.io/fuzzy-name`` label), an owner's uid,
an owner's name with seniority, a container image, and the first page of
``orderby=created_at desc``. ``benchmarks.search`` reports the same plans at a million
objects.

A search the builder does not compose yet (it refuses the parameter, or drops it and
lists every pod) is skipped, naming what is missing, so the test starts checking it as
soon as it is composed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
import pytest_asyncio

from apiserver.query import EVERYTHING_SCOPE, Target, compiled, list_statement
from benchmarks.fleet import image_of, imaged
from benchmarks.search import composed_search, search_queries
from kubesim import objects

CLUSTERS = ("c1", "c2", "c3", "c4")
DEPLOYMENTS = 800  # per cluster, each with one ReplicaSet
REPLICAS = 9
TEMPLATES = 300
COLUMNS = ("cluster", "grp", "version", "resource", "kind", "namespace", "name", "uid", "resource_version",
           "owner_uid", "labels", "created_at", "seq", "object")
CREATED = datetime(2026, 1, 1, tzinfo=UTC)
JSON = dict[str, Any]


def _row(cluster: str, seq: int, obj: JSON, owner_uid: str | None, group: str = "") -> tuple[Any, ...]:
    meta = obj["metadata"]
    created = CREATED + timedelta(minutes=(seq * 7919) % (180 * 24 * 60))  # a prime: times shuffled
    meta["creationTimestamp"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    resource = {"Deployment": "deployments", "ReplicaSet": "replicasets", "Pod": "pods"}[obj["kind"]]
    return (cluster, group, "v1", resource, obj["kind"], meta["namespace"], meta["name"], meta["uid"],
            str(seq), owner_uid, meta.get("labels", {}), created, seq, orjson.dumps(obj))


def _workload(rng: random.Random, cluster: str, wave: int, d: int, seq: int,
              templates: list[JSON]) -> Iterator[tuple[Any, ...]]:
    """A Deployment, its ReplicaSet and its pods: rows for ``resources``."""
    namespace = f"ns-{d % 20:02d}"
    deploy = imaged(objects.make_deployment(rng, namespace, f"app-{d}", REPLICAS), d, wave)
    deploy["metadata"]["uid"] = f"{cluster}-d{d}"
    yield _row(cluster, seq, deploy, None, "apps")
    rs_hash = objects.hex_id(rng, 10)
    rs = imaged(objects.make_replicaset(rng, namespace, f"app-{d}-{rs_hash}", owner=deploy), d, wave)
    rs["metadata"]["uid"] = f"{cluster}-r{d}"
    yield _row(cluster, seq + 1, rs, deploy["metadata"]["uid"], "apps")
    for k in range(REPLICAS):
        template = templates[(d * REPLICAS + k) % len(templates)]
        labels = {**template["metadata"]["labels"], "app": f"app-{d}", "pod-template-hash": rs_hash}
        meta = {**template["metadata"], "namespace": namespace, "uid": f"{cluster}-p{d}-{k}",
                "name": f"{rs['metadata']['name']}-{objects.suffix(rng)}", "labels": labels,
                "ownerReferences": [objects.owner_reference(rs)]}
        pod = imaged({**template, "metadata": meta}, d, wave)
        yield _row(cluster, seq + 2 + k, pod, rs["metadata"]["uid"])


def _rows(rng: random.Random) -> Iterator[tuple[Any, ...]]:
    templates = [objects.make_pod(rng, "t", f"t-{i}") for i in range(TEMPLATES)]
    seq = 0
    for wave, cluster in enumerate(CLUSTERS):
        for d in range(DEPLOYMENTS):
            yield from _workload(rng, cluster, wave % 3, d, seq, templates)
            seq += 2 + REPLICAS


@pytest_asyncio.fixture
async def big(pool: asyncpg.Pool) -> asyncpg.Pool:
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("resources", columns=COLUMNS, records=_rows(random.Random(5)))
        await conn.execute("VACUUM (ANALYZE) resources")
        await conn.execute("VACUUM (ANALYZE) resource_keys")  # filled by the COPY's trigger
    return pool


def _nodes(plan: JSON) -> Iterator[JSON]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _scans(conn: asyncpg.Connection, sql: str, params: list[Any]) -> list[tuple[str, str]]:
    """The scans of ``resources`` and ``resource_keys`` (where name and image searches find
    their candidates) and their indexes in the plan: (node type, index name or ""). A bitmap index
    scan names only its index (its heap scan names the table)."""
    plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *params)  # json: decoded by the pool
    return [(n["Node Type"], n.get("Index Name", "")) for n in _nodes(plan[0]["Plan"])
            if n.get("Relation Name") in ("resources", "resource_keys")
            or n.get("Index Name", "").startswith(("resources_", "resource_keys_"))]


def _read_by_index(scans: list[tuple[str, str]]) -> bool:
    return bool(scans) and all(kind != "Seq Scan" for kind, _ in scans) and any(index for _, index in scans)


async def _check_sees_a_sequential_scan(conn: asyncpg.Connection) -> None:
    """What the searches are held to fails a plan that reads the table whole: a pod list's
    first page passes, and fails with index scans off."""
    sql, params = compiled(list_statement(Target(group="", version="v1", resource="pods", kind="Pod"),
                                          EVERYTHING_SCOPE, limit=501))
    async with conn.transaction():
        assert _read_by_index(await _scans(conn, sql, params))
        for setting in ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan"):
            await conn.execute(f"SET LOCAL {setting} = off")
        assert not _read_by_index(await _scans(conn, sql, params))


async def test_searches_read_an_index(big: asyncpg.Pool) -> None:
    image = image_of("app", 7, 1)  # app-7's in cluster c2 (wave 1)
    owner = await big.fetchrow("SELECT uid, name FROM resources WHERE cluster = 'c2'"
                               " AND resource = 'replicasets' ORDER BY name OFFSET 10 LIMIT 1")
    piece = owner["name"].rsplit("-", 1)[1][2:8]  # six characters of a ReplicaSet's hash: its pods
    searches = search_queries(piece=piece, owner=owner["uid"], deployment=("c2", "app-7"), image=image)
    missing: dict[str, str] = {}
    async with big.acquire() as conn:
        await _check_sees_a_sequential_scan(conn)
        await conn.execute("SET plan_cache_mode = force_custom_plan")  # as the read API plans (apiserver.app)
        for name, query in searches.items():
            composed = composed_search(query)
            if isinstance(composed, str):
                missing[name] = composed
                continue
            sql, params = composed
            scans = await _scans(conn, sql, params)
            print(name, scans)
            assert _read_by_index(scans), (name, scans)
            # Name and image searches find their candidates in the narrow resource_keys.
            narrow = {"fuzzy_name": "resource_keys_name_trgm",
                      "container_image": "resource_keys_container_images"}
            if name in narrow:
                assert ("Bitmap Index Scan", narrow[name]) in scans, scans
            assert await conn.fetch(sql, *params), f"{name} finds nothing: {query}"
    if missing:
        pytest.skip("needs the searches composed by apiserver.query: "
                    + "; ".join(f"{name}: {why}" for name, why in missing.items()))
