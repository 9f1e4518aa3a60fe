"""Inspections over HTTP, under ``/kubepedia/v1/inspections``:

- ``GET  .../inspections``: the checks (name, severity, what each flags);
- ``POST .../inspections/runs``: run every check now (201; 200 with the run that started less
  than ``apiserver.inspection_runs.MIN_REQUEST_INTERVAL_S`` ago, or that was in progress);
- ``GET  .../inspections/runs?since=&before=&limit=``: the history, newest first: per run,
  its findings per check and per severity, so "was it better last week?" is one request;
- ``GET  .../inspections/runs/latest`` and ``.../runs/{id}``: a run's findings, as JSON or
  CSV (``?format=csv`` or ``Accept: text/csv``), each with the read-API path of its object.

Every GET takes ``clusters``, ``namespaces``, ``checks`` and ``severity`` (comma-separated);
a bad or unknown parameter is a 400 ``Status`` naming it. What a reader sees of a stored run
is limited to the caller's scope in SQL (``apiserver.query_inspections.visible``), counts
included: "how many more" is counted within the scope too.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import asyncpg
import orjson
from aiohttp import web
from multidict import MultiMapping

from apiserver.inspection_runs import run_requested
from apiserver.keys import POOL, scope_of
from apiserver.params import bad_request
from apiserver.query import Scope, compiled
from apiserver.query_inspections import (
    CHECKS,
    SEVERITIES,
    FindingFilters,
    counts_statement,
    findings_statement,
    run_statement,
    runs_statement,
)
from apiserver.reports import csv_cell, names_parameter, time_parameter
from kube.status import StatusError

PREFIX = "/kubepedia/v1/inspections"
API_VERSION = "kubepedia.io/v1"
FILTERS = ("clusters", "namespaces", "checks", "severity")
REPORT_PARAMETERS = (*FILTERS, "format")
HISTORY_PARAMETERS = (*FILTERS, "since", "before", "limit")
HISTORY_LIMIT = 100
MAX_HISTORY_LIMIT = 1000
CSV_COLUMNS = (
    "check",
    "severity",
    "cluster",
    "group",
    "version",
    "resource",
    "namespace",
    "name",
    "message",
    "link",
)
_SHOWN = 80
_LIMIT = re.compile(r"^[0-9]{1,6}$")


# -- parameters ---------------------------------------------------------------------------------


def _only(query: MultiMapping[str], accepted: Sequence[str]) -> None:
    unknown = sorted(k for k in set(query) if k not in accepted)
    if unknown:
        raise bad_request(
            f"inspections do not take {', '.join(k[:_SHOWN] for k in unknown)} here;"
            f" they take {', '.join(accepted)}"
        )


def _chosen(query: MultiMapping[str], key: str, known: Sequence[str]) -> frozenset[str] | None:
    if key not in query:
        return None
    values = {v.strip() for text in query.getall(key) for v in text.split(",") if v.strip()}
    wrong = sorted(v for v in values if v not in known)
    if not values or wrong:
        shown = repr(wrong[0][:_SHOWN]) if wrong else "nothing"
        raise bad_request(f"{key}: {shown} is not one of {', '.join(known)}")
    return frozenset(values)


def parse_finding_filters(query: MultiMapping[str]) -> FindingFilters:
    return FindingFilters(
        clusters=names_parameter(query, "clusters"),
        namespaces=names_parameter(query, "namespaces"),
        checks=_chosen(query, "checks", list(CHECKS)),
        severities=_chosen(query, "severity", SEVERITIES),
    )


def _format(request: web.Request) -> str:
    values = request.query.getall("format", [])
    if len(values) > 1:
        raise bad_request("format: give it once")
    if values:
        if values[0] not in ("json", "csv"):
            raise bad_request(f"format: {values[0][:_SHOWN]!r} is not one of json, csv")
        return values[0]
    return "csv" if "text/csv" in request.headers.get("Accept", "") else "json"


def _limit(query: MultiMapping[str]) -> int:
    values = query.getall("limit", [])
    if not values:
        return HISTORY_LIMIT
    if len(values) > 1 or not _LIMIT.match(values[0]) or not 1 <= int(values[0]) <= MAX_HISTORY_LIMIT:
        raise bad_request(f"limit: give one whole number of runs from 1 to {MAX_HISTORY_LIMIT}")
    return int(values[0])


# -- values -------------------------------------------------------------------------------------


def _rfc3339(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def link(row: Mapping[str, Any]) -> str:
    """The read-API path of a finding's object; for a finding about a cluster, the clusters
    report of that cluster."""
    cluster = quote(row["cluster"], safe="")
    if not row["resource"]:
        return f"/kubepedia/v1/reports/clusters?clusters={cluster}"
    group, version = row["grp"], quote(row["version"], safe="")
    root = (
        f"/clusters/{cluster}/api/{version}"
        if not group
        else f"/clusters/{cluster}/apis/{quote(group, safe='')}/{version}"
    )
    place = f"/namespaces/{quote(row['namespace'], safe='')}" if row["namespace"] else ""
    return f"{root}{place}/{quote(row['resource'], safe='')}/{quote(row['name'], safe='')}"


def _finding(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "check": row["check_name"],
        "severity": row["severity"],
        "cluster": row["cluster"],
        "group": row["grp"],
        "version": row["version"],
        "resource": row["resource"],
        "namespace": row["namespace"],
        "name": row["name"],
        "message": row["message"],
        "link": link(row),
    }


def _run_meta(run: asyncpg.Record) -> dict[str, Any]:
    return {
        "run": run["id"],
        "trigger": run["trigger"],
        "startedAt": _rfc3339(run["started_at"]),
        "finishedAt": _rfc3339(run["finished_at"]),
        "findingsKept": run["findings_kept"],
    }


def _summary(filters: FindingFilters, counts: Sequence[asyncpg.Record]) -> dict[str, Any]:
    """A run's findings per check (every check asked for, zero included) and per severity."""
    checks = [c for c in CHECKS.values() if filters.checks is None or c.name in filters.checks]
    by_check = {
        c.name: {"severity": c.severity, "findings": 0}
        for c in checks
        if filters.severities is None or c.severity in filters.severities
    }
    by_severity = {s: 0 for s in SEVERITIES if filters.severities is None or s in filters.severities}
    for row in counts:
        by_check.setdefault(row["check_name"], {"severity": row["severity"], "findings": 0})
        by_check[row["check_name"]]["findings"] += row["findings"]
        by_severity[row["severity"]] = by_severity.get(row["severity"], 0) + row["findings"]
    return {"findings": sum(by_severity.values()), "bySeverity": by_severity, "byCheck": by_check}


def csv_body(items: Sequence[Mapping[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(CSV_COLUMNS)
    writer.writerows([csv_cell(item[c]) for c in CSV_COLUMNS] for item in items)
    return out.getvalue().encode()


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


# -- handlers -----------------------------------------------------------------------------------


async def _fetch(request: web.Request, stmt: Any) -> list[asyncpg.Record]:
    sql, params = compiled(stmt)
    rows: list[asyncpg.Record] = await request.app[POOL].fetch(sql, *params)
    return rows


async def list_checks(request: web.Request) -> web.Response:
    _only(request.query, ())
    items = [{"name": c.name, "severity": c.severity, "description": c.description} for c in CHECKS.values()]
    return _json({"kind": "InspectionCheckList", "apiVersion": API_VERSION, "items": items})


async def get_run(request: web.Request) -> web.Response:
    """A run's findings (``latest``: the newest finished run)."""
    _only(request.query, REPORT_PARAMETERS)
    filters, fmt = parse_finding_filters(request.query), _format(request)
    scope: Scope = scope_of(request)
    chosen = request.match_info["run"]
    runs = await _fetch(request, run_statement(None if chosen == "latest" else int(chosen)))
    if not runs:
        raise StatusError(
            404,
            "NotFound",
            "no inspection run yet: POST " + PREFIX + "/runs, or wait for the schedule"
            if chosen == "latest"
            else f"inspection run {chosen} not found",
            {"name": chosen, "kind": "inspectionruns"},
        )
    run = runs[0]
    items = [_finding(r) for r in await _fetch(request, findings_statement(run["id"], filters, scope))]
    if fmt == "csv":
        return web.Response(
            body=csv_body(items),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="inspection-{run["id"]}.csv"'},
        )
    counts = await _fetch(request, counts_statement([run["id"]], filters, scope))
    summary = _summary(filters, counts)
    shown: dict[str, int] = {}
    for item in items:
        shown[item["check"]] = shown.get(item["check"], 0) + 1
    checks = [
        {
            "name": name,
            "severity": entry["severity"],
            "findings": entry["findings"],
            "shown": shown.get(name, 0),
            "more": entry["findings"] - shown.get(name, 0),
            "description": CHECKS[name].description if name in CHECKS else "",
        }
        for name, entry in summary["byCheck"].items()
    ]
    return _json(
        {
            "kind": "InspectionReport",
            "apiVersion": API_VERSION,
            "metadata": _run_meta(run),
            "findings": summary["findings"],
            "bySeverity": summary["bySeverity"],
            "checks": checks,
            "items": items,
        }
    )


async def _history_items(
    request: web.Request, runs: Sequence[asyncpg.Record], filters: FindingFilters, scope: Scope
) -> list[dict[str, Any]]:
    counts = await _fetch(request, counts_statement([r["id"] for r in runs], filters, scope)) if runs else []
    per_run: dict[int, list[asyncpg.Record]] = {}
    for row in counts:
        per_run.setdefault(row["run_id"], []).append(row)
    return [{**_run_meta(r), **_summary(filters, per_run.get(r["id"], []))} for r in runs]


async def list_runs(request: web.Request) -> web.Response:
    _only(request.query, HISTORY_PARAMETERS)
    filters = parse_finding_filters(request.query)
    since, before = time_parameter(request.query, "since"), time_parameter(request.query, "before")
    if since is not None and before is not None and since >= before:
        raise bad_request("since must be earlier than before (since is inclusive, before exclusive)")
    runs = await _fetch(request, runs_statement(since=since, before=before, limit=_limit(request.query)))
    items = await _history_items(request, runs, filters, scope_of(request))
    return _json({"kind": "InspectionRunList", "apiVersion": API_VERSION, "items": items})


async def start_run(request: web.Request) -> web.Response:
    _only(request.query, ())
    started = await run_requested(request.app[POOL])
    runs = await _fetch(request, run_statement(started.run_id))
    items = await _history_items(request, runs, FindingFilters(), scope_of(request))
    body = {"kind": "InspectionRun", "apiVersion": API_VERSION, **items[0], "reused": started.reused}
    response = _json(body, status=200 if started.reused else 201)
    response.headers["Location"] = f"{PREFIX}/runs/{started.run_id}"
    return response


async def _not_allowed(request: web.Request) -> web.Response:
    raise StatusError(405, "MethodNotAllowed", f"{request.method} is not allowed on {request.path[:_SHOWN]}")


def inspection_routes() -> list[web.RouteDef]:
    return [
        web.get(PREFIX, list_checks),
        web.route("*", PREFIX, _not_allowed),
        web.get(PREFIX + "/runs", list_runs),
        web.post(PREFIX + "/runs", start_run),
        web.route("*", PREFIX + "/runs", _not_allowed),
        web.get(PREFIX + "/runs/{run:latest|[0-9]{1,18}}", get_run),
        web.route("*", PREFIX + "/runs/{run:latest|[0-9]{1,18}}", _not_allowed),
    ]
