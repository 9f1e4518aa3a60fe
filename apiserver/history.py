"""The history API (our own paths, not Kubernetes'; docs/design.md, "History"):

- ``GET /kubepedia/v1/history/object?cluster=&group=&resource=&namespace=&name=``: every
  retained change of one object, oldest first, each with its time, type, sequence, the
  object as the change left it (for a deletion: its last state), and what changed since the
  previous version as a JSON Patch (RFC 6902) and a unified diff of the YAML;
- ``GET /kubepedia/v1/history/changes?namespace=&clusters=&types=&changeTypes=&since=&before=``:
  the changes of a namespace, clusters or types in a time window, oldest first, without
  objects (ask an object's history for those).

Both are paged (``limit``, ``continue``: keyset pages by sequence, tokens signed like a
list's). A walk reads up to the change-log horizon read before its first page's snapshot
(``apiserver.horizon``), which is its ``metadata.resourceVersion``: every change up to it
has ended, so the walk misses none, and a watch from there continues where it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from apiserver import history_params as hp
from apiserver import horizon, pagination
from apiserver.keys import CATALOG, CONTINUE_KEY, scope_of
from apiserver.params import MAX_LIMIT, bad_request
from apiserver.patches import creation_patch, json_patch, text_diff, yaml_text
from apiserver.query import compiled
from apiserver.query_history import (
    ChangeFilter,
    ObjectKey,
    changes_statement,
    object_history_statement,
    window_point,
)
from apiserver.render import list_meta
from apiserver.replicas import read_pool
from apiserver.times import rfc3339, time_param

API_VERSION = "kubepedia.io/v1"
PREFIX = "/kubepedia/v1/history"
HISTORY_LIMIT, HISTORY_MOST = 100, 1000  # entries carry objects, patches and diffs
CHANGES_LIMIT = 500
JSON = dict[str, Any]


def _entry(row: asyncpg.Record) -> JSON:
    return {"seq": row["seq"], "time": rfc3339(row["at"]), "type": row["type"], "cluster": row["cluster"],
            "group": row["grp"], "version": row["version"], "resource": row["resource"], "kind": row["kind"],
            "namespace": row["namespace"], "name": row["name"], "uid": row["uid"],
            "resourceVersion": row["resource_version"]}


class _Versions:
    """Each version's object and YAML, made once per page: an entry's after-state is the
    next entry's before-state, and rendering YAML is most of a history page's time."""

    def __init__(self) -> None:
        self._yaml: dict[str, str] = {}

    def yaml(self, text: str | None, obj: Any) -> str:
        if text is None:
            return ""
        found = self._yaml.get(text)
        if found is None:
            found = self._yaml[text] = yaml_text(obj)
        return found


def _loaded(text: str | None) -> Any:
    return orjson.loads(text) if text is not None else None


def _with_states(row: asyncpg.Record, versions: _Versions) -> JSON:
    """An entry with its object, patch and diff. A creation's patch adds the whole object;
    a deletion has no next version (patch null) and its diff removes every line."""
    entry = _entry(row)
    before, after = _loaded(row["before"]), _loaded(row["after"])
    where = "/".join(p for p in (row["cluster"], row["namespace"], row["name"]) if p)
    labels = {"old_label": f"{where} (before change {row['seq']})",
              "new_label": f"{where} (after change {row['seq']})"}
    old_yaml = versions.yaml(row["before"], before)
    if row["type"] == "DELETED":
        entry.update(object=before, patch=None, diff=text_diff(old_yaml, "", **labels))
        return entry
    new_yaml = versions.yaml(row["after"], after)
    patch = creation_patch(after) if before is None else json_patch(before, after)
    entry.update(object=after, patch=patch, diff=text_diff(old_yaml, new_yaml, **labels))
    return entry


def _entries(rows: Sequence[asyncpg.Record]) -> list[JSON]:
    versions = _Versions()
    return [_with_states(row, versions) for row in rows]


def _cursor(request: web.Request, query: str) -> tuple[int, int, int] | None:
    """(the walk's resourceVersion, the last sequence served, the walk's upper bound)."""
    token = request.query.get("continue", "")
    if not token:
        return None
    try:
        cursor = pagination.decode(token, query=query, key=request.app[CONTINUE_KEY])
        last, upto = (int(v) for v in cursor.after)
    except (pagination.BadContinue, ValueError) as exc:
        raise bad_request(str(exc) if isinstance(exc, pagination.BadContinue) else
                          "continue key is not valid") from exc
    return cursor.resource_version, last, upto


def _page(request: web.Request, *, kind: str, rv: int, upto: int, rows: Sequence[asyncpg.Record],
          limit: int, query: str, items: list[JSON]) -> web.Response:
    token = None
    if len(rows) > limit:
        cursor = pagination.Cursor(resource_version=rv, after=(str(rows[limit - 1]["seq"]), str(upto)))
        token = pagination.encode(cursor, query=query, key=request.app[CONTINUE_KEY])
    body = {"kind": kind, "apiVersion": API_VERSION, "metadata": list_meta(resource_version=rv,
                                                                          continue_token=token),
            "items": items}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def object_history(request: web.Request) -> web.Response:
    q = request.query
    catalog = await request.app[CATALOG].get()
    group, resource = hp.resolve_type(catalog, hp.required(q, "resource", hp.TYPE_NAME),
                                      group=q.get("group"))
    key = ObjectKey(group=group, resource=resource, namespace=hp.optional(q, "namespace", hp.DNS_LABEL) or "",
                    name=hp.object_name(q), cluster=hp.optional(q, "cluster", hp.DNS_LABEL))
    limit = hp.limit(q, default=HISTORY_LIMIT, most=HISTORY_MOST)
    query = pagination.fingerprint([request.path, key.cluster, key.group, key.resource, key.namespace,
                                    key.name])
    cursor = _cursor(request, query)
    async with horizon.snapshot(read_pool(request), with_horizon=cursor is None,
                                at_least=cursor[2] if cursor else None) as (conn, seen):  # its upto
        if cursor is None:
            rv = upto = seen or 0
            after = None
        else:
            rv, after, upto = cursor
        sql, params = compiled(object_history_statement(key, scope_of(request), upto=upto, after=after,
                                                        limit=limit + 1))
        rows = await conn.fetch(sql, *params)
    # Objects up to ~1.5 MiB: YAML and diffs are computed off the event loop.
    items = await asyncio.to_thread(_entries, rows[:limit])
    return _page(request, kind="ObjectHistory", rv=rv, upto=upto, rows=rows, limit=limit, query=query,
                 items=items)


def _change_filter(request: web.Request, catalog: Any) -> ChangeFilter:
    q = request.query
    wanted = ChangeFilter(clusters=hp.names(q, "clusters", hp.DNS_LABEL),
                          namespace=hp.optional(q, "namespace", hp.DNS_LABEL), types=hp.types(catalog, q),
                          change_types=hp.change_types(q), since=time_param(q, "since"),
                          before=time_param(q, "before"))
    if wanted.since is not None and wanted.before is not None and wanted.since >= wanted.before:
        raise bad_request("since must be earlier than before (since is inclusive, before exclusive)")
    return wanted


def _fingerprint(request: web.Request, wanted: ChangeFilter) -> str:
    return pagination.fingerprint([
        request.path, sorted(wanted.clusters or ()), wanted.namespace, sorted(wanted.types or ()),
        sorted(wanted.change_types or ()), wanted.since.isoformat() if wanted.since else None,
        wanted.before.isoformat() if wanted.before else None])


def _upper_bound(wanted: ChangeFilter, window: asyncpg.Record, upto: int) -> int:
    """The last sequence of a window (0: the window holds nothing): the horizon ``upto``, or
    the last change before ``before`` if that is lower."""
    if wanted.before is None:
        return upto
    return min(int(window["hi"] or 0), upto)


async def changes(request: web.Request) -> web.Response:
    wanted = _change_filter(request, await request.app[CATALOG].get())
    limit = hp.limit(request.query, default=CHANGES_LIMIT, most=MAX_LIMIT)
    query = _fingerprint(request, wanted)
    cursor = _cursor(request, query)
    async with horizon.snapshot(read_pool(request), with_horizon=cursor is None,
                                at_least=cursor[2] if cursor else None) as (conn, seen):  # its upto
        if cursor is None:
            sql, params = compiled(window_point(since=wanted.since, before=wanted.before))
            window = await conn.fetchrow(sql, *params)
            rv = seen or 0
            upto, lo, after = _upper_bound(wanted, window, rv), window["lo"], None
        else:
            rv, last, upto = cursor
            lo, after = None, last
        rows: list[asyncpg.Record] = []
        if upto:
            sql, params = compiled(changes_statement(wanted, scope_of(request), lo=lo, hi=upto, after=after,
                                                     limit=limit + 1))
            rows = await conn.fetch(sql, *params)
    return _page(request, kind="ChangeList", rv=rv, upto=upto, rows=rows, limit=limit, query=query,
                 items=[_entry(r) for r in rows[:limit]])


def history_routes() -> list[tuple[str, Any]]:
    """(path, handler) pairs of the history API."""
    return [(f"{PREFIX}/object", object_history), (f"{PREFIX}/changes", changes)]
