"""Reports over real HTTP and a real store, checked against plain Python over the same objects."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from apiserver.app import build_app
from apiserver.query import Scope
from apiserver.query_reports import _constant
from apiserver.times import parse_time
from syncer.ingest import Store
from tests.access import AUTH, granted
from tests.apiserver.conftest import Api
from tests.apiserver.reporting import (
    CLUSTERS,
    HOSTILE,
    Synced,
    event_time,
    expected_counts,
    expected_events,
    expected_images,
    expected_nodes,
    expected_pods,
    fill_reports,
    quantity,
)
from tests.factories import NODES, event
from tests.serving import serve_app

PREFIX = "/kubepedia/v1/reports"
Expect = Callable[..., list[dict[str, Any]]]


@pytest_asyncio.fixture
async def synced(pool: asyncpg.Pool) -> Synced:
    return await fill_reports(pool)


async def _report(api: Api, name: str, **params: str) -> list[dict[str, Any]]:
    status, body = await api.get(f"{PREFIX}/{name}", **params)
    assert status == 200, body
    assert body["kind"] == "Report" and body["metadata"]["name"] == name
    for item in body["items"]:
        assert list(item) == [c["name"] for c in body["columns"]]
    items: list[dict[str, Any]] = body["items"]
    return items


def _nodes(synced: Synced, clusters: set[str] | None = None, namespaces: set[str] | None = None) -> list[Any]:
    return expected_nodes(synced, clusters)  # nodes belong to no namespace: the filter does not apply


EXPECTED: dict[str, Expect] = {"counts": expected_counts, "pods": expected_pods, "images": expected_images,
                               "nodes": _nodes, "events": expected_events}


@pytest.mark.parametrize("name", list(EXPECTED))
async def test_reports_match_a_plain_computation(api: Api, synced: Synced, name: str) -> None:
    assert await _report(api, name) == EXPECTED[name](synced)
    chosen = {"clusters": {"east", "edge"}, "namespaces": {"web", "default"}}
    items = await _report(api, name, clusters="east,edge", namespaces="web,default")
    assert items == EXPECTED[name](synced, **chosen) and items


async def test_images_count_pods_once_and_every_container(api: Api, synced: Synced) -> None:
    """A pod with one image in two containers is one pod and two containers; init and
    ephemeral containers count; a pod whose images are too long to index is still counted."""
    items = {(i["image"], i["cluster"], i["namespace"]): i for i in await _report(api, "images")}
    busybox = items[("docker.io/library/busybox:1.36", "east", "default")]
    assert busybox["pods"] >= 1
    wide = items[("registry.example.com/" + "x" * 120 + ":1", "west", "payments")]
    assert (wide["pods"], wide["containers"]) == (1, 24)
    assert any(i["containers"] > i["pods"] for i in items.values())


@pytest.mark.parametrize(("since", "before"), [
    ("2026-01-03", "2026-01-06"), ("2026-01-05T12:00:00.500000Z", None), (None, "1767312000"),
    ("2026-01-02 00:00:00", "1767571200000"), ("2026-01-04T01:30:00+02:00", "2026-01-04T23:30:00Z"),
])
async def test_events_in_a_window(api: Api, synced: Synced, since: str | None, before: str | None) -> None:
    """since is inclusive, before exclusive, in every accepted spelling of a time."""
    params = {k: v for k, v in (("since", since), ("before", before)) if v is not None}
    window = {k: parse_time(v) for k, v in params.items()}
    items = await _report(api, "events", **params)
    assert items == expected_events(synced, since=window.get("since"), before=window.get("before")) and items
    edges = [event_time(e) for _, e in synced.of("events")]
    assert datetime(2026, 1, 5, 12, 0, 0, 500000, tzinfo=UTC) in edges  # the inclusive edge is in the data


async def test_stored_report_columns_survive_malformed_pods(pool: asyncpg.Pool, synced: Synced) -> None:
    """Generated columns never refuse an object: a list that is an object, a restart count that
    is a string or a fraction, images too long to index (NULL, read from the object)."""
    rows = {r["name"]: r for r in await pool.fetch(
        "SELECT name, pod_phase, pod_restarts, pod_images FROM resources"
        " WHERE cluster = 'east' AND resource = 'pods' AND name IN ('odd', 'wide', 'pod-5')")}
    assert rows["odd"]["pod_restarts"] == 2 and rows["odd"]["pod_images"] == []
    assert rows["wide"]["pod_images"] is None
    assert rows["pod-5"]["pod_phase"] is None
    bad = await pool.fetchval("SELECT kube_event_time(object) FROM resources WHERE name = 'bad-time' LIMIT 1")
    assert bad == datetime(2026, 1, 1, tzinfo=UTC)  # February 30 is no time: the first timestamp is


@pytest.mark.parametrize("text", [
    "4", "3920m", "16101600Ki", "1.5Gi", ".5", "5.", "+2", "-2", "100n", "7u", "1k", "2M", "3G", "4T", "5P",
    "6E", "1Ti", "1Pi", "1Ei", "1e3", "1E3", "2.5e-3", "1e99", "1E", "1e", "e3", "", "lots", "1 Gi", "1KiB",
    "0x10",
    "1e100", "1" * 65, "\u0661\u0662"])
async def test_quantities_parse_as_kubernetes_reads_them(pool: asyncpg.Pool, text: str) -> None:
    parsed = await pool.fetchval("SELECT kube_quantity($1)", text)
    assert parsed == quantity(text)


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
         micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-01-02T03:04:05Z", _utc(2026, 1, 2, 3, 4, 5)), ("2026-01-02t03:04:05z", _utc(2026, 1, 2, 3, 4, 5)),
    ("2026-01-02 03:04:05Z", _utc(2026, 1, 2, 3, 4, 5)),
    ("2024-02-29T23:59:59.123456Z", _utc(2024, 2, 29, 23, 59, 59, 123456)),
    ("2026-01-02T03:04:05.5Z", _utc(2026, 1, 2, 3, 4, 5, 500000)),
    ("2000-03-01T00:00:00+02:00", _utc(2000, 2, 29, 22)),
    ("2000-03-01T00:00:00-02:30", _utc(2000, 3, 1, 2, 30)),
    ("1970-01-01T00:00:00Z", _utc(1970, 1, 1)), ("9999-12-31T23:59:59Z", _utc(9999, 12, 31, 23, 59, 59)),
    ("2023-02-30T00:00:00Z", None), ("2023-04-31T00:00:00Z", None), ("2023-02-29T00:00:00Z", None),
    ("2026-13-01T00:00:00Z", None), ("2026-01-02T24:00:00Z", None), ("2026-01-02T03:04:05", None),
    ("2026-01-02", None), ("", None), ("yesterday", None), ("2026-01-02T03:04:05.1234567890Z", None),
    ("2026-01-02T03:04:05+24:00", None), ("٢٠٢٦-01-02T03:04:05Z", None),
])
async def test_times_parse_as_kubernetes_writes_them(pool: asyncpg.Pool, text: str,
                                                     expected: datetime | None) -> None:
    """kube_time: what event times are indexed by; never raises, whatever a member sends."""
    assert await pool.fetchval("SELECT kube_time($1)", text) == expected


# -- filters, scope, formats ---------------------------------------------------------------------

@pytest_asyncio.fixture
async def scoped_api(db_url: str) -> AsyncIterator[Api]:
    """The API for a caller who may read east and west, namespaces web and default."""
    app = build_app(database_url=db_url, access=granted(Scope.of(clusters={"east", "west"},
                                                                 namespaces={"web", "default"})))
    runner, url = await serve_app(app)
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield Api(url=url, session=session)
    await runner.cleanup()


@pytest.mark.parametrize("name", list(EXPECTED))
async def test_reports_keep_to_the_callers_scope(scoped_api: Api, synced: Synced, name: str) -> None:
    allowed = {"clusters": {"east", "west"}, "namespaces": {"web", "default"}}
    expected = EXPECTED[name](synced, **allowed) if name != "nodes" else []  # nodes are in no namespace
    assert await _report(scoped_api, name) == expected
    narrowed = {"clusters": {"west"}, "namespaces": {"web"}}
    expected = EXPECTED[name](synced, **narrowed) if name != "nodes" else []
    assert await _report(scoped_api, name, clusters="west,edge", namespaces="web,payments") == expected


@pytest_asyncio.fixture
async def pods_only_api(db_url: str) -> AsyncIterator[Api]:
    """The API for a caller who may read pods only."""
    app = build_app(database_url=db_url, access=granted(Scope.of(types={("", "pods")})))
    runner, url = await serve_app(app)
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield Api(url=url, session=session)
    await runner.cleanup()


async def test_reports_keep_to_the_types_a_caller_may_read(pods_only_api: Api, synced: Synced) -> None:
    pods = [r for r in expected_counts(synced) if r["resource"] == "pods"]
    assert await _report(pods_only_api, "counts") == pods
    assert await _report(pods_only_api, "pods") == expected_pods(synced)
    assert await _report(pods_only_api, "images") == expected_images(synced)
    assert await _report(pods_only_api, "nodes") == await _report(pods_only_api, "events") == []
    clusters = await _report(pods_only_api, "clusters")
    assert [(c["types"], c["objects"]) for c in clusters] == [(1, len(synced.objects[c["cluster"]]["pods"]))
                                                              for c in clusters]


@pytest_asyncio.fixture
async def nodes_only_api(db_url: str) -> AsyncIterator[Api]:
    """The API for a caller who may read nodes only."""
    app = build_app(database_url=db_url, access=granted(Scope.of(types={("", "nodes")})))
    runner, url = await serve_app(app)
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield Api(url=url, session=session)
    await runner.cleanup()


async def test_pod_reports_are_empty_to_a_caller_who_may_not_read_pods(nodes_only_api: Api,
                                                                     synced: Synced) -> None:
    """The images report reads a summary, not the pods' rows: the scope's types still apply."""
    assert await _report(nodes_only_api, "images") == await _report(nodes_only_api, "pods") == []
    assert await _report(nodes_only_api, "nodes") == expected_nodes(synced)


async def test_absurd_quantities_saturate_a_sum(api: Api, pool: asyncpg.Pool, synced: Synced) -> None:
    """A node claiming 9 exabytes on top of edge's 1: the sum is held at 2^63-1, not an error."""
    node = dict(synced.objects["edge"]["nodes"][0])
    node["metadata"] = {**node["metadata"], "name": "edge-huge", "uid": "edge-huge"}
    node["status"] = {**node["status"], "capacity": {"cpu": "-1e99", "memory": "9E", "pods": "1"}}
    await Store(pool).apply_batch(cluster="edge", rtype=NODES, events=[event("ADDED", node)])
    edge = next(r for r in await _report(api, "nodes") if r["cluster"] == "edge")
    assert edge["capacityMemoryBytes"] == 2**63 - 1 and edge["capacityCpuMillis"] == -(2**63 - 1)


async def test_clusters_report_keeps_to_the_callers_scope(scoped_api: Api, synced: Synced) -> None:
    assert [i["cluster"] for i in await _report(scoped_api, "clusters")] == ["east", "west"]


@pytest.mark.parametrize("name", [*EXPECTED, "clusters"])
async def test_csv_holds_what_json_holds(api: Api, synced: Synced, name: str) -> None:
    status, body = await api.get(f"{PREFIX}/{name}")
    assert status == 200
    async with api.session.get(f"{api.url}{PREFIX}/{name}", params={"format": "csv"}) as resp:
        assert resp.status == 200 and resp.content_type == "text/csv"
        text = await resp.text()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == [c["name"] for c in body["columns"]]

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return str(value).lower()
        return ("'" + value) if isinstance(value, str) and value[:1] in "=+-@\t\r" and value else str(value)

    assert rows[1:] == [[cell(i[c]) for c in rows[0]] for i in body["items"]]


async def test_csv_cells_never_start_a_formula(api: Api, synced: Synced) -> None:
    """Values from member clusters that a spreadsheet would run are written with a leading '."""
    for name, hostile in (("events", HOSTILE), ("images", "-cmd|' /C calc'!A0")):
        async with api.session.get(f"{api.url}{PREFIX}/{name}", params={"format": "csv"}) as resp:
            cells = [c for row in csv.reader(io.StringIO(await resp.text(), newline="")) for c in row]
        assert "'" + hostile in cells and hostile not in cells
        _status, body = await api.get(f"{PREFIX}/{name}")
        assert any(hostile in item.values() for item in body["items"]), "JSON keeps the value as it is"


async def test_clusters_report_says_which_data_is_stale(api: Api, pool: asyncpg.Pool, synced: Synced) -> None:
    await pool.execute("UPDATE clusters SET healthy = false, health_message = 'connection refused',"
                       " last_seen_at = now() - interval '1 hour' WHERE name = 'west'")
    await pool.execute("UPDATE clusters SET healthy = true, last_seen_at = now() WHERE name = 'east'")
    status, body, resp = await api.request("GET", f"{PREFIX}/clusters")
    assert status == 200
    items = {i["cluster"]: i for i in body["items"]}
    assert sorted(items) == sorted(CLUSTERS)
    assert items["west"]["stale"] is True and items["west"]["message"] == "connection refused"
    assert items["west"]["dataAgeSeconds"] >= 3600
    assert items["east"]["stale"] is False and items["east"]["healthy"] is True
    assert items["edge"]["healthy"] is None and items["edge"]["lastSeenAt"] is None
    assert {i["types"] for i in items.values()} == {3}
    for cluster, item in items.items():
        assert item["objects"] == sum(len(v) for v in synced.objects[cluster].values())
        assert item["listingTypes"] == item["errorTypes"] == item["skipped"] == 0
        assert isinstance(item["lastEventAt"], str) and item["lastEventAt"].endswith("Z")
    assert [w for w in resp.headers.getall("Warning") if "west" in w], "flagged as lists flag stale data"
    _, body, resp = await api.request("GET", f"{PREFIX}/pods", params={"clusters": "east"})
    assert "Warning" not in resp.headers


async def test_the_report_index(api: Api) -> None:
    status, body = await api.get(PREFIX)
    assert status == 200 and body["kind"] == "ReportList"
    assert [r["name"] for r in body["items"]] == ["counts", "pods", "images", "nodes", "events", "clusters"]
    events = next(r for r in body["items"] if r["name"] == "events")
    assert events["parameters"] == ["clusters", "namespaces", "format", "since", "before"]


@pytest.mark.parametrize(("path", "params", "code"), [
    ("/widgets", {}, 404),
    ("/Pods", {}, 404),
    ("/pods", {"clusters": ""}, 400),
    ("/pods", {"clusters": "East"}, 400),
    ("/pods", {"clusters": ",".join(f"c{i}" for i in range(1001))}, 400),
    ("/counts", {"namespaces": "a_b"}, 400),
    ("/counts", {"namespaces": "x" * 64}, 400),
    ("/images", {"format": "xml"}, 400),
    ("/pods", {"since": "2026-01-01"}, 400),
    ("/pods", {"namespace": "web"}, 400),
    ("/clusters", {"limit": "5"}, 400),
    ("/events", {"since": "yesterday"}, 400),
    ("/events", {"before": "2026-02-30"}, 400),
    ("/events", {"since": "12345678901234"}, 400),
    ("/events", {"since": "2026-01-05", "before": "2026-01-05"}, 400),
    ("/events", {"since": "2026-01-06", "before": "2026-01-05"}, 400),
    ("/events", {"since": "\u0662\u0660\u0662\u0666-01-05"}, 400),
])
async def test_bad_requests_answer_a_status(api: Api, synced: Synced, path: str, params: dict[str, str],
                                            code: int) -> None:
    status, body = await api.get(PREFIX + path, **params)
    assert status == code, body
    assert body["kind"] == "Status" and body["code"] == code and body["message"]


async def test_a_parameter_given_twice(api: Api, synced: Synced) -> None:
    status, body, _ = await api.request("GET", f"{PREFIX}/events?since=2026-01-01&since=2026-01-02")
    assert status == 400 and "once" in body["message"]
    status, body, _ = await api.request("GET", f"{PREFIX}/pods?clusters=east&clusters=west")
    assert status == 200 and [i["cluster"] for i in body["items"]] == ["east", "west"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_reports_are_read_only(api: Api, method: str) -> None:
    status, body, _ = await api.request(method, f"{PREFIX}/pods")
    assert status == 405 and body["kind"] == "Status"


@pytest.mark.parametrize("text", ["pods", "events", "", "{status,capacity,cpu}"])
def test_constants_are_plain(text: str) -> None:
    assert _constant(text) is not None


@pytest.mark.parametrize("text", ["x'; DROP TABLE resources; --", "Pods", "a b", "'"])
def test_anything_else_never_becomes_sql_text(text: str) -> None:
    with pytest.raises(ValueError, match="unexpected constant"):
        _constant(text)
