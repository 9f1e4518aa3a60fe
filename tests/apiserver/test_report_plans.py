"""What each report reads, at a realistic size: the plan PostgreSQL picks, not a timing.

40,000 pods (copies of kubesim's realistic pods, about 4.6 KB each) in four clusters, with
nodes and events, are copied into the store and vacuumed, as autovacuum leaves an
insert-mostly table. Then the plans must show that the pod and count reports are
index-only scans that never visit the table (a scan of the objects would read about
180 MB here, 5 GB at a million pods), that events are found by their time, and nodes by
their type. The timings of each report over HTTP are printed (``pytest -s``).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
import pytest_asyncio

from apiserver.app import build_app
from apiserver.query import EVERYTHING_SCOPE, compiled
from apiserver.query_reports import REPORTS, Filters
from kubesim import objects
from tests.access import AUTH, granted
from tests.apiserver.conftest import Api
from tests.serving import serve_app

CLUSTERS = ("c1", "c2", "c3", "c4")
PODS_PER_CLUSTER = 10_000
NODES_PER_CLUSTER = 100
EVENTS_PER_CLUSTER = 1_000
TEMPLATES = 500
COLUMNS = ("cluster", "grp", "version", "resource", "kind", "namespace", "name", "uid", "resource_version",
           "labels", "created_at", "seq", "object")
NO_FILTERS = Filters()
WINDOW = Filters(since=datetime(2026, 1, 3, tzinfo=UTC), before=datetime(2026, 1, 4, tzinfo=UTC))
CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def _rows(rng: random.Random) -> Iterator[tuple[Any, ...]]:
    templates = [objects.make_pod(rng, "t", f"t-{i}") for i in range(TEMPLATES)]
    seq = 0
    for cluster in CLUSTERS:
        for i in range(PODS_PER_CLUSTER):
            seq += 1
            tpl = templates[i % TEMPLATES]
            ns, name = f"ns-{i % 20:02d}", f"pod-{i}"
            meta = {**tpl["metadata"], "name": name, "namespace": ns, "uid": f"{cluster}-{i}",
                    "resourceVersion": str(i + 1)}
            obj = {**tpl, "metadata": meta}
            yield (cluster, "", "v1", "pods", "Pod", ns, name, f"{cluster}-{i}", str(i + 1),
                   obj["metadata"]["labels"], CREATED, seq, orjson.dumps(obj))
        for i in range(NODES_PER_CLUSTER):
            seq += 1
            node = objects.make_node(rng, f"node-{i}")
            yield (cluster, "", "v1", "nodes", "Node", "", f"node-{i}", f"{cluster}-n{i}", "1",
                   node["metadata"]["labels"], CREATED, seq, orjson.dumps(node))
        for i in range(EVENTS_PER_CLUSTER):
            seq += 1
            event = objects.make_event(rng, f"ns-{i % 20:02d}", f"ev-{i}",
                                       {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": f"pod-{i}"}})
            event["lastTimestamp"] = (CREATED + timedelta(minutes=7 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            yield (cluster, "", "v1", "events", "Event", event["metadata"]["namespace"], f"ev-{i}",
                   f"{cluster}-e{i}", "1", {}, CREATED, seq, orjson.dumps(event))


@pytest_asyncio.fixture
async def big(pool: asyncpg.Pool) -> asyncpg.Pool:
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("resources", columns=COLUMNS, records=_rows(random.Random(3)))
        for cluster in CLUSTERS:
            await conn.execute("INSERT INTO clusters (name, mode) VALUES ($1, 'push')", cluster)
            await conn.execute(
                "INSERT INTO sync_state (cluster, grp, resource, version, kind, namespaced, phase,"
                " object_count) SELECT cluster, grp, resource, version, kind, namespace <> '', 'watching',"
                " count(*) FROM resources WHERE cluster = $1 GROUP BY 1, 2, 3, 4, 5, 6", cluster)
        await conn.execute("VACUUM (ANALYZE) resources, pod_image_use")
    return pool


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _plan(pool: asyncpg.Pool, name: str, filters: Filters = NO_FILTERS) -> list[dict[str, Any]]:
    sql, params = compiled(REPORTS[name].statement(filters, EVERYTHING_SCOPE))
    async with pool.acquire() as conn:
        # As the read API plans (apiserver.app): for the values of each request.
        await conn.execute("SET plan_cache_mode = force_custom_plan")
        plan = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *params)  # json: decoded
    return list(_nodes(plan[0]["Plan"]))


def _on_resources(nodes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(n["Node Type"], n.get("Index Name", "")) for n in nodes if n.get("Relation Name") == "resources"]


@pytest.mark.parametrize(("name", "index"), [("pods", "resources_pod_report")])
async def test_pod_reports_read_only_an_index(big: asyncpg.Pool, name: str,
                                                        index: str | None) -> None:
    nodes = await _plan(big, name)
    scans = _on_resources(nodes)
    assert not [s for s in scans if s[0] == "Seq Scan"], scans
    only = [n for n in nodes if n["Node Type"] == "Index Only Scan"]
    assert only and all(n["Heap Fetches"] == 0 for n in only), scans
    read = max(n["Actual Rows"] * n["Actual Loops"] for n in only)  # rows per loop, loops per worker
    assert round(read) >= len(CLUSTERS) * PODS_PER_CLUSTER
    if index is not None:
        assert (("Index Only Scan", index)) in scans


async def test_images_read_their_summary(big: asyncpg.Pool) -> None:
    """The images report reads pod_image_use (migration 13); of ``resources`` it reads only
    the index of pods whose images were too long to summarize (empty here), and so never
    runs the branch that would count those from their objects."""
    nodes = await _plan(big, "images")
    scans = _on_resources(nodes)
    assert scans and {index for _, index in scans} == {"resources_pod_images_unbounded"}, scans
    live = [n for n in nodes if n.get("Index Name") == "resources_pod_images_unbounded" and n["Actual Loops"]]
    assert all(n["Node Type"] == "Index Only Scan" for n in live), "only probed, never read"
    summary = [n for n in nodes if n.get("Relation Name") == "pod_image_use" and n["Actual Loops"]]
    assert sum(n["Actual Rows"] for n in summary) == await big.fetchval("SELECT count(*) FROM pod_image_use")
    # COPY fires the triggers too: every indexed container is in the summary.
    assert await big.fetchval("SELECT sum(containers) FROM pod_image_use") == await big.fetchval(
        "SELECT sum(cardinality(pod_images)) FROM resources WHERE grp = '' AND resource = 'pods'") > 0
    one = Filters(clusters=frozenset({"c2"}), namespaces=frozenset({"ns-03"}))
    narrowed = await _plan(big, "images", one)
    assert "pod_image_use_pkey" in {n.get("Index Name") for n in narrowed}
    assert [s for s in _on_resources(narrowed) if s[0] not in ("Index Scan", "Index Only Scan")] == []


async def test_a_large_summary_is_read_in_order(pool: asyncpg.Pool) -> None:
    """At 1M pods the summary holds about 130k rows: read in the report's order from
    ``pod_image_use_report_order``, neither hashed nor sorted."""
    await pool.execute(
        "INSERT INTO pod_image_use (cluster, namespace, image, pods, containers)"
        " SELECT 'c-' || c, 'ns-' || n, 'registry.example.com/app-' || i || ':1', 1 + i % 7, 1 + i % 7"
        " FROM generate_series(1, 100) c, generate_series(1, 20) n, generate_series(1, 65) i")
    await pool.execute("VACUUM (ANALYZE) pod_image_use")
    nodes = await _plan(pool, "images")
    assert ("Index Only Scan", "pod_image_use_report_order") in [
        (n["Node Type"], n.get("Index Name")) for n in nodes if n["Actual Rows"] == 130_000]
    assert not [n for n in nodes if n["Node Type"] in ("Sort", "Aggregate") and n["Actual Rows"]]


async def test_the_count_report_reads_the_kept_counts(big: asyncpg.Pool) -> None:
    nodes = await _plan(big, "counts")
    assert not _on_resources(nodes), "counted from the objects"
    assert any(n.get("Relation Name") == "object_counts" for n in nodes)


async def test_events_are_found_by_their_time(big: asyncpg.Pool) -> None:
    scans = _on_resources(await _plan(big, "events", WINDOW))
    assert [s for s in scans if s[1] == "resources_event_time"], scans
    assert not [s for s in scans if s[0] == "Seq Scan"], scans


async def test_nodes_are_found_by_their_type(big: asyncpg.Pool) -> None:
    scans = _on_resources(await _plan(big, "nodes"))
    assert scans and not [s for s in scans if s[0] == "Seq Scan"], scans


@pytest_asyncio.fixture
async def big_api(db_url: str, big: asyncpg.Pool) -> AsyncIterator[Api]:
    runner, url = await serve_app(build_app(database_url=db_url, access=granted()))
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield Api(url=url, session=session)
    await runner.cleanup()


async def test_report_timings(big_api: Api) -> None:
    """Each report over HTTP at this size; printed, not asserted (the machine decides)."""
    lines = []
    for name, params in (("counts", {}), ("pods", {}), ("images", {}), ("nodes", {}),
                         ("events", {"since": "2026-01-03", "before": "2026-01-04"}), ("clusters", {}),
                         ("images", {"clusters": "c2", "namespaces": "ns-03"})):
        took = []
        for _ in range(5):
            started = time.perf_counter()
            status, body = await big_api.get(f"/kubepedia/v1/reports/{name}", **params)
            took.append((time.perf_counter() - started) * 1000)
            assert status == 200 and body["items"], body
        lines.append(f"{name} {params or ''}: median {statistics.median(took):.0f} ms,"
                     f" max {max(took):.0f} ms, {len(body['items'])} rows")
    print("\nreports at 40,000 pods:\n" + "\n".join(lines))
    _, pods = await big_api.get("/kubepedia/v1/reports/pods")
    assert sum(row["pods"] for row in pods["items"]) == len(CLUSTERS) * PODS_PER_CLUSTER
