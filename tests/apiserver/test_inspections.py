"""Inspections over a real store and real HTTP: each check finds the problem made on purpose
and not its healthy twin; runs, history, formats and the reader's scope."""

from __future__ import annotations

import csv
import io
from typing import Any

import asyncpg
import pytest_asyncio

from apiserver.app import build_app
from apiserver.inspection_runs import run_requested
from apiserver.query_inspections import CHECKS
from apiserver.scope import Scope
from tests.access import granted
from tests.apiserver.conftest import Api, serving
from tests.apiserver.inspecting import EXPECTED, fill_problems

PREFIX = "/kubepedia/v1/inspections"


@pytest_asyncio.fixture
async def problems(pool: asyncpg.Pool) -> None:
    await fill_problems(pool)


def _found(items: list[dict[str, Any]]) -> set[tuple[str, ...]]:
    return {(i["check"], i["cluster"], i["group"], i["resource"], i["namespace"], i["name"]) for i in items}


async def _run(api: Api) -> dict[str, Any]:
    status, body, _ = await api.request("POST", PREFIX + "/runs")
    assert status in (200, 201), body
    return dict(body)


async def test_each_check_finds_its_problem_and_no_healthy_object(api: Api, problems: None) -> None:
    await _run(api)
    status, body = await api.get(PREFIX + "/runs/latest")
    assert status == 200, body
    assert _found(body["items"]) == EXPECTED
    assert {c["name"] for c in body["checks"]} == set(CHECKS)
    assert all(c["more"] == 0 for c in body["checks"])


async def test_the_report_as_csv_by_parameter_or_accept(api: Api, problems: None) -> None:
    await _run(api)
    for params, headers in (({"format": "csv"}, None), (None, {"Accept": "text/csv"})):
        async with api.session.get(api.url + PREFIX + "/runs/latest", params=params, headers=headers) as resp:
            assert resp.status == 200 and resp.content_type == "text/csv"
            rows = list(csv.DictReader(io.StringIO(await resp.text())))
        assert {
            (r["check"], r["cluster"], r["group"], r["resource"], r["namespace"], r["name"]) for r in rows
        } == EXPECTED
        crashy = next(r for r in rows if r["name"] == "crashy")
        assert crashy["link"] == "/clusters/east/api/v1/namespaces/web/pods/crashy"
        assert "CrashLoopBackOff" in crashy["message"] and crashy["severity"] == "critical"


async def test_filters_narrow_the_report(api: Api, problems: None) -> None:
    await _run(api)
    status, body = await api.get(PREFIX + "/runs/latest", clusters="west", severity="warning,info")
    assert status == 200
    assert _found(body["items"]) == {e for e in EXPECTED if e[1] == "west"}
    status, body = await api.get(PREFIX + "/runs/latest", checks="pod-pending", namespaces="web")
    assert _found(body["items"]) == {e for e in EXPECTED if e[0] == "pod-pending"}


async def test_bad_parameters_are_400_naming_them(api: Api, problems: None) -> None:
    for path, params, named in (
        (PREFIX + "/runs/latest", {"severity": "fatal"}, "severity"),
        (PREFIX + "/runs/latest", {"checks": "nope"}, "checks"),
        (PREFIX + "/runs/latest", {"clusters": "Not_A_Name"}, "clusters"),
        (PREFIX + "/runs/latest", {"format": "xml"}, "format"),
        (PREFIX + "/runs/latest", {"sql": "1"}, "sql"),
        (PREFIX + "/runs", {"limit": "0"}, "limit"),
        (PREFIX + "/runs", {"since": "yesterday"}, "since"),
    ):
        status, body = await api.get(path, **params)
        assert status == 400 and body["kind"] == "Status", (params, body)
        assert body["message"].startswith(named) or f" {named}" in body["message"], body
    status, body = await api.get(PREFIX + "/runs/latest")
    assert status == 404 and body["kind"] == "Status"  # no run yet
    status, body, _ = await api.request("DELETE", PREFIX + "/runs")
    assert status == 405 and body["kind"] == "Status"


async def test_history_shows_a_problem_fixed_between_runs(
    api: Api, pool: asyncpg.Pool, problems: None
) -> None:
    first = await _run(api)
    # The crash-looping pod is gone before the second run (a request right after another
    # answers that one, so the interval is waived here).
    await pool.execute("DELETE FROM resources WHERE cluster = 'east' AND name = 'crashy'")
    started = await run_requested(pool, min_interval_s=0)
    assert not started.reused and started.run_id > first["run"]
    status, body = await api.get(PREFIX + "/runs")
    assert status == 200
    newest, oldest = body["items"]
    assert (newest["run"], oldest["run"]) == (started.run_id, first["run"])
    assert oldest["byCheck"]["pod-crash-looping"]["findings"] == 2
    assert newest["byCheck"]["pod-crash-looping"]["findings"] == 1
    assert newest["bySeverity"]["critical"] == oldest["bySeverity"]["critical"] - 1
    status, body = await api.get(PREFIX + "/runs", since=newest["startedAt"])
    assert [r["run"] for r in body["items"]] == [started.run_id]
    status, body = await api.get(PREFIX + f"/runs/{first['run']}", checks="pod-crash-looping")
    assert {i["name"] for i in body["items"]} == {"crashy", "restarty"}


async def test_a_request_soon_after_a_run_answers_that_run(api: Api, problems: None) -> None:
    first = await _run(api)
    status, again, _ = await api.request("POST", PREFIX + "/runs")
    assert status == 200 and again["reused"] and again["run"] == first["run"]


async def test_findings_beyond_the_bound_are_counted_not_kept(pool: asyncpg.Pool, problems: None) -> None:
    started = await run_requested(pool, cap=1)
    kept = await pool.fetchval(
        "SELECT count(*) FROM inspection_findings WHERE run_id = $1 AND check_name = 'pod-crash-looping'",
        started.run_id,
    )
    counted = await pool.fetchval(
        "SELECT sum(findings) FROM inspection_counts WHERE run_id = $1 AND check_name = 'pod-crash-looping'",
        started.run_id,
    )
    assert (kept, counted) == (1, 2)


async def test_a_reader_sees_only_what_its_scope_allows(
    db_url: str, pool: asyncpg.Pool, problems: None
) -> None:
    await run_requested(pool)
    scope = Scope.of(clusters={"east", "edge"}, namespaces={"web"}, types={("", "pods")})
    app = build_app(database_url=db_url, access=granted(scope))
    async with serving(app) as narrow:
        status, body = await narrow.get(PREFIX + "/runs/latest")
        assert status == 200
        # east's pods in web, and the clusters' findings of east and edge (a cluster is seen by
        # whoever may read it); nothing of west, no nodes, no deployments.
        assert _found(body["items"]) == {
            e for e in EXPECTED if (e[1] == "east" and e[3] == "pods") or e[0] == "cluster-stale"
        }
        assert body["findings"] == len(body["items"])  # counts are scoped too
        status, history = await narrow.get(PREFIX + "/runs")
        assert history["items"][0]["findings"] == len(body["items"])


async def test_retention_deletes_old_runs_and_old_findings(pool: asyncpg.Pool, problems: None) -> None:
    from apiserver.inspection_runs import Retention

    runs = [
        (await run_requested(pool, min_interval_s=0, retention=Retention(max_runs=2, findings_runs=1))).run_id
        for _ in range(3)
    ]
    kept = await pool.fetch("SELECT id, findings_kept FROM inspection_runs ORDER BY id")
    assert [(r["id"], r["findings_kept"]) for r in kept] == [(runs[1], False), (runs[2], True)]
    assert await pool.fetchval("SELECT count(DISTINCT run_id) FROM inspection_findings") == 1
    assert await pool.fetchval("SELECT count(DISTINCT run_id) FROM inspection_counts") == 2
