"""Reports for dashboards and audits: ``GET /kubepedia/v1/reports/{name}``, as JSON or, with
``?format=csv``, as CSV; ``GET /kubepedia/v1/reports`` lists them with their columns.

Our own paths, not Kubernetes': a report is a summary, not an object kubectl could list.
Every report takes ``clusters=a,b`` and ``namespaces=x,y`` (nodes and clusters, which
belong to no namespace, ignore the latter), and the events report ``since`` and
``before`` (``apiserver.times``; since inclusive, before exclusive). Parameters are checked
before any query: a bad or unknown one is a 400 ``Status``, an unknown report a 404.
Statements come from ``apiserver.query_reports`` with the caller's scope.

A CSV cell that a spreadsheet would run as a formula (it starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return) is written with a leading ``'``: image names, event
reasons and errors come from member clusters, and whoever opens the export must not run
what a cluster put there.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from multidict import MultiMapping

from apiserver.catalog import Catalog
from apiserver.keys import CATALOG, scope_of
from apiserver.params import MAX_CLUSTERS, bad_request
from apiserver.query import Scope, compiled
from apiserver.query_reports import REPORTS, Filters, Report
from apiserver.replicas import read_pool
from apiserver.served import warn
from apiserver.times import FORMS, MAX_TEXT, parse_time
from kube.status import StatusError

PREFIX = "/kubepedia/v1/reports"
API_VERSION = "kubepedia.io/v1"
FORMATS = ("json", "csv")
COMMON = ("clusters", "namespaces", "format")
WINDOW = ("since", "before")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # cluster and namespace names: DNS labels
# For the report's transaction only. The pool plans every statement for its values
# (apiserver.app), and PostgreSQL plans the body of a SQL function called per row
# (kube_quantity, kube_event_count) through the same cache: forced custom, it would plan it
# again for every row (2000 nodes: 490 ms instead of 140); the reports' conditions on types
# are constants (query_reports), which a cached plan serves as well. work_mem: the images
# report groups up to a few hundred thousand (cluster, namespace, images) rows, which the
# planner then hashes instead of sorting (1M pods of random images: about 1.1 s instead of 2).
_SETTINGS = ("SELECT set_config('plan_cache_mode', 'auto', true), set_config('work_mem', '64MB', true)")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SHOWN = 80


def names_parameter(query: MultiMapping[str], key: str) -> frozenset[str] | None:
    """``key=a,b`` (also given more than once) as a set of names, or None if absent."""
    if key not in query:
        return None
    names = [n.strip() for text in query.getall(key) for n in text.split(",") if n.strip()]
    if not names or len(names) > MAX_CLUSTERS:
        raise bad_request(f"{key}: give between 1 and {MAX_CLUSTERS} names, comma separated")
    for name in names:
        if not _NAME.match(name):
            raise bad_request(f"{key}: {name[:_SHOWN]!r} is not a {key[:-1]} name")
    return frozenset(names)


def _single(query: MultiMapping[str], key: str) -> str | None:
    values = query.getall(key, [])
    if len(values) > 1:
        raise bad_request(f"{key}: give it once")
    return values[0] if values else None


def time_parameter(query: MultiMapping[str], key: str) -> datetime | None:
    text = _single(query, key)
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        shown = text[:MAX_TEXT].encode("ascii", "backslashreplace").decode()
        raise bad_request(f"{key}: invalid time {shown!r} ({exc}); expected {FORMS}") from exc


def parse_filters(report: Report, query: MultiMapping[str]) -> tuple[Filters, str]:
    """The filters and output format a request asks for, or a 400 naming the parameter."""
    accepted = COMMON + (WINDOW if report.windowed else ())
    unknown = sorted(k for k in set(query) if k not in accepted)
    if unknown:
        raise bad_request(f"the {report.name} report does not take {', '.join(k[:_SHOWN] for k in unknown)};"
                          f" it takes {', '.join(accepted)}")
    fmt = _single(query, "format") or "json"
    if fmt not in FORMATS:
        raise bad_request(f"format: {fmt[:_SHOWN]!r} is not one of {', '.join(FORMATS)}")
    filters = Filters(clusters=names_parameter(query, "clusters"),
                      namespaces=names_parameter(query, "namespaces"),
                      since=time_parameter(query, "since"), before=time_parameter(query, "before"))
    if filters.since is not None and filters.before is not None and filters.since >= filters.before:
        raise bad_request("since must be earlier than before (since is inclusive, before exclusive)")
    return filters, fmt


def report_of(request: web.Request) -> Report:
    name = request.match_info["name"]
    report = REPORTS.get(name)
    if report is None:
        raise StatusError(404, "NotFound", f"report {name[:_SHOWN]!r} not found; the reports are"
                          f" {', '.join(REPORTS)}", {"name": name[:_SHOWN], "kind": "reports"})
    return report


# -- values -------------------------------------------------------------------------------------

def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """A value as JSON carries it: times as RFC 3339 in UTC, everything else as it is."""
    return _rfc3339(value) if isinstance(value, datetime) else value


def _items(report: Report, rows: Sequence[asyncpg.Record]) -> list[dict[str, Any]]:
    """Rows as JSON objects (a statement's labels are its report's columns, in order), with
    times in RFC 3339. Only the time columns are converted: the images report has 130k rows
    at 1M pods, and converting every value took 0.7 s of its answer instead of 0.2."""
    items = [dict(row) for row in rows]
    times = [c.name for c in report.columns if c.type == "date-time"]
    for item in items:
        for name in times:
            item[name] = _plain(item[name])
    return items


def _with_staleness(items: list[dict[str, Any]], catalog: Catalog) -> None:
    """The clusters report's staleness, as the catalog (and every Warning header) has it."""
    for item in items:
        state = catalog.clusters.get(item["cluster"])
        item["stale"] = None if state is None else state.stale
        age = None if state is None else state.age_seconds
        item["dataAgeSeconds"] = None if age is None else round(age, 1)
        item["message"] = None if state is None else state.message


def _selected_stale(catalog: Catalog, filters: Filters, scope: Scope) -> list[str]:
    return [state.warning() for name, state in sorted(catalog.clusters.items())
            if state.stale and scope.allows_cluster(name)
            and (filters.clusters is None or name in filters.clusters)]


# -- bodies -------------------------------------------------------------------------------------

def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_START) else value
    return str(_plain(value))


def csv_body(report: Report, items: Sequence[Mapping[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    names = [c.name for c in report.columns]
    writer.writerow(names)
    writer.writerows([csv_cell(item[n]) for n in names] for item in items)
    return out.getvalue().encode()


def _sorted(names: frozenset[str] | None) -> list[str] | None:
    return None if names is None else sorted(names)


def json_body(report: Report, filters: Filters, items: Sequence[Mapping[str, Any]]) -> bytes:
    shown: dict[str, Any] = {"clusters": _sorted(filters.clusters),
                             "namespaces": _sorted(filters.namespaces) if report.namespaced else None}
    if report.windowed:
        shown |= {"since": filters.since, "before": filters.before}
    body = {"kind": "Report", "apiVersion": API_VERSION,
            "metadata": {"name": report.name, "generatedAt": _rfc3339(datetime.now(UTC))},
            "description": report.description, "filters": {k: _plain(v) for k, v in shown.items()},
            "columns": [_column(c) for c in report.columns], "items": items}
    return orjson.dumps(body)


def _column(column: Any) -> dict[str, str]:
    return {"name": column.name, "type": column.type, "description": column.description}


# -- handlers -----------------------------------------------------------------------------------

async def get_report(request: web.Request) -> web.Response:
    report = report_of(request)
    filters, fmt = parse_filters(report, request.query)
    scope = scope_of(request)
    catalog = await request.app[CATALOG].get()
    sql, params = compiled(report.statement(filters, scope))
    async with read_pool(request).acquire() as conn, conn.transaction(readonly=True):
        await conn.execute(_SETTINGS)
        rows = await conn.fetch(sql, *params)
    items = _items(report, rows)
    if report.name == "clusters":
        _with_staleness(items, catalog)
        items = [{c.name: item[c.name] for c in report.columns} for item in items]  # in the columns' order
    if fmt == "csv":
        response = web.Response(body=csv_body(report, items), content_type="text/csv", charset="utf-8",
                                headers={"Content-Disposition": f'attachment; filename="{report.name}.csv"'})
    else:
        response = web.Response(body=json_body(report, filters, items), content_type="application/json")
    warn(response, _selected_stale(catalog, filters, scope))
    return response


async def list_reports(request: web.Request) -> web.Response:
    items = [{"name": r.name, "description": r.description, "path": f"{PREFIX}/{r.name}",
              "parameters": list(COMMON + (WINDOW if r.windowed else ())),
              "columns": [_column(c) for c in r.columns]} for r in REPORTS.values()]
    return web.Response(body=orjson.dumps({"kind": "ReportList", "apiVersion": API_VERSION, "items": items}),
                        content_type="application/json")


def report_routes() -> list[tuple[str, Any]]:
    """(path, handler) pairs of the reports."""
    return [(PREFIX, list_reports), (PREFIX + "/{name}", get_report)]
