"""Kubernetes object paths, all clusters merged or one cluster: list and get.

``/api/v1/pods``, ``/apis/apps/v1/namespaces/x/deployments/y``, and the same paths under
``/clusters/{cluster}``. Every request is read-only (other verbs answer 405) and is
answered from PostgreSQL through ``apiserver.query``.

A list's ``metadata.resourceVersion`` is the change-log horizon read just before its first
page's snapshot (``apiserver.horizon``): every change up to it is in that page, so a watch
from it misses nothing that changed during a paged walk. Each object keeps its member
cluster's own resourceVersion.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
from aiohttp import web

from apiserver import horizon, pagination, render
from apiserver.access import authorize
from apiserver.asof import AS_OF, list_as_of
from apiserver.catalog import Catalog
from apiserver.keys import CONTINUE_KEY, REMAINING_CAP, scope_of
from apiserver.params import (
    MAX_LIMIT,
    ListOptions,
    bad_request,
    check_resource_version,
    field_selector,
    label_selector,
    list_options,
)
from apiserver.query import (
    Target,
    clusters_read,
    compiled,
    cursor_of,
    get_statement,
    list_statement,
    narrows_images,
    order_keys,
    remaining_statement,
    unindexed_images_statement,
)
from apiserver.replicas import read_pool
from apiserver.search import NO_SEARCH, check_plain, search_options
from apiserver.served import served_catalog, warn
from apiserver.watch import watch
from kube.resources import ResourceType
from kube.status import StatusError

STREAM_PAGE = 1000  # rows per query when a client asks for everything at once
GET_CANDIDATES = 10  # clusters named when a name exists in several


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    rtype: ResourceType
    cluster: str | None
    namespace: str | None
    name: str | None


def _not_found_type(group: str, version: str, resource: str) -> StatusError:
    gv = f"{group}/{version}" if group else version
    return StatusError(404, "NotFound",
                       f"the server could not find the requested resource ({resource} in {gv})")


async def resolve(request: web.Request) -> tuple[Request, Catalog]:
    """The type, cluster, namespace and name a path names, or a 404 Status."""
    info = request.match_info
    group, version, resource = info.get("group", ""), info["version"], info["resource"]
    catalog = await served_catalog(request)  # under /clusters/{cluster}: what that cluster serves
    rtype = catalog.find(group, version, resource)
    if rtype is None:
        raise _not_found_type(group, version, resource)
    cluster = info.get("cluster")
    namespace = info.get("namespace")
    name = info.get("name")
    if namespace is not None and not rtype.namespaced:
        raise _not_found_type(group, version, resource)
    if name is not None and namespace is None and rtype.namespaced:
        raise _not_found_type(group, version, resource)
    return Request(rtype=rtype, cluster=cluster, namespace=namespace, name=name), catalog


def _table(req: Request, catalog: Catalog) -> render.ClusterTable:
    return render.ClusterTable(req.rtype, printer_columns=catalog.columns_of(req.rtype))


def target_of(req: Request, opts: ListOptions, query: Mapping[str, str] | None = None) -> Target:
    """What a request names; with ``query``, with the search conditions (apiserver.search)."""
    labels = label_selector(opts.label_selector)
    fields = field_selector(opts.field_selector, req.rtype.kind)
    search = NO_SEARCH
    if query is not None:
        search, labels = search_options(query, labels)
    return Target(group=req.rtype.group, version=req.rtype.version, resource=req.rtype.resource,
                  kind=req.rtype.kind, cluster=req.cluster,
                  clusters=search.clusters if search.clusters is not None else opts.clusters,
                  namespaces=search.namespaces, names=search.names, namespace=req.namespace, name=req.name,
                  labels=labels, fields=fields, search=search)


def _warned(response: web.StreamResponse, catalog: Catalog, cluster: str | None,
            among: frozenset[str] | None) -> None:
    warn(response, catalog.warnings(cluster, among=among))


async def _page(conn: asyncpg.Connection, target: Target, request: web.Request, *, limit: int,
                after: tuple[str, ...] | None) -> list[asyncpg.Record]:
    if not narrows_images(target):
        return await _fetch_page(conn, target, request, limit=limit, after=after)
    if conn.is_in_transaction():
        return await _image_page(conn, target, request, limit=limit, after=after)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await _image_page(conn, target, request, limit=limit, after=after)


async def _image_page(conn: asyncpg.Connection, target: Target, request: web.Request, *, limit: int,
                      after: tuple[str, ...] | None) -> list[asyncpg.Record]:
    """A page with a container image condition: whether unindexed pods exist, and the page,
    read in one snapshot (``Target.unindexed_images``)."""
    sql, params = compiled(unindexed_images_statement())
    target = replace(target, unindexed_images=bool(await conn.fetchval(sql, *params)))
    return await _fetch_page(conn, target, request, limit=limit, after=after)


async def _fetch_page(conn: asyncpg.Connection, target: Target, request: web.Request, *, limit: int,
                      after: tuple[str, ...] | None) -> list[asyncpg.Record]:
    sql, params = compiled(list_statement(target, scope_of(request), limit=limit, after=after))
    rows: list[asyncpg.Record] = await conn.fetch(sql, *params)
    return rows


@contextlib.asynccontextmanager
async def _snapshot(request: web.Request, *, with_horizon: bool = True,
                    at_least: int | None = None) -> AsyncIterator[tuple[asyncpg.Connection, int]]:
    """A read-only REPEATABLE READ transaction and the list's resourceVersion: the horizon
    read before its snapshot (``apiserver.horizon``), so every change up to it is in the
    snapshot. A change above it may be too: a watch from it then sends that change again
    (at least once, never lost). Without ``with_horizon`` (a later page, whose version is
    its cursor's), 0."""
    async with horizon.snapshot(read_pool(request), with_horizon=with_horizon,
                                at_least=at_least) as (conn, seen):
        yield conn, seen or 0


async def _first(request: web.Request, target: Target, *, limit: int) -> tuple[int, list[asyncpg.Record]]:
    """The first rows of a list and the sequence they reflect, read in one snapshot."""
    async with _snapshot(request) as (conn, current):
        rows = await _page(conn, target, request, limit=limit, after=None)
    return current, rows


@dataclass(frozen=True, kw_only=True, slots=True)
class Page:
    """One page of a paged list, read in one snapshot."""

    resource_version: int  # the list's: the sequence its first page saw
    rows: list[asyncpg.Record]
    more: bool  # objects follow this page
    remaining: int | None  # how many follow, where Kubernetes says and the count is cheap


async def _remaining(conn: asyncpg.Connection, request: web.Request, target: Target,
                     after: tuple[str, ...]) -> int | None:
    """remainingItemCount: the objects after ``after``; None when it is not to be told.

    Asked for (``withRemainingCount=true``): counted exactly. Not asked: as Kubernetes
    does, only without selectors, and counted up to a cap (None beyond it)."""
    wanted = target.search.with_remaining_count
    if wanted is False or (wanted is None and target.selective()):
        return None
    cap = None if wanted else request.app[REMAINING_CAP]
    sql, params = compiled(remaining_statement(target, scope_of(request), after=after, cap=cap))
    count = int(await conn.fetchval(sql, *params))
    return count if cap is None or count < cap else None


async def _read_page(request: web.Request, target: Target, *, limit: int,
                     cursor: pagination.Cursor | None) -> Page:
    """Up to ``limit`` objects after the cursor and, without selectors, how many follow them
    (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/list-meta/:
    unset with label or field selectors, and on the last page), in one snapshot."""
    async with _snapshot(request, with_horizon=cursor is None,
                         at_least=cursor.resource_version if cursor else None) as (conn, current):
        rows = await _page(conn, target, request, limit=limit + 1, after=cursor.after if cursor else None)
        more = len(rows) > limit
        rows = rows[:limit]
        remaining = None
        if more:
            remaining = await _remaining(conn, request, target, cursor_of(order_keys(target.search.order),
                                                                          rows[-1]))
    rv = cursor.resource_version if cursor else current
    return Page(resource_version=rv, rows=rows, more=more, remaining=remaining)


def _query_fingerprint(request: web.Request, opts: ListOptions, target: Target) -> str:
    return pagination.fingerprint([request.path, opts.label_selector, opts.field_selector,
                                   sorted(target.clusters or ()), *target.search.fingerprint()])


async def list_objects(request: web.Request) -> web.StreamResponse:
    req, catalog = await resolve(request)
    opts = list_options(request.query, request.headers.get("Accept", ""))
    authorize(request, verb="watch" if opts.watch else "list", rtype=req.rtype, namespace=req.namespace,
              cluster=req.cluster)
    target = target_of(req, opts, request.query)
    if target.search.limit is not None and not opts.limit and not opts.watch:
        opts = replace(opts, limit=min(target.search.limit, MAX_LIMIT))  # ``search.clusterpedia.io/limit``
    if request.query.get(AS_OF):  # history: the list as it was at a time (apiserver.asof)
        check_plain(target.search, what="asOf", allowed=("clusters",))
        warnings = catalog.warnings(req.cluster, among=clusters_read(target, scope_of(request)))
        return await list_as_of(request, rtype=req.rtype, target=target, opts=opts,
                                table=_table(req, catalog), warnings=warnings)
    if opts.watch:
        # A watch follows changes in the change log's order; conditions that need other
        # rows (an owner) or an order do not apply to it.
        check_plain(target.search, what="watch")
        return await watch(request, opts, target, catalog, _table(req, catalog))
    if opts.limit:
        return await _list_page(request, req, opts, target, catalog)
    return await _list_all(request, req, opts, target, catalog)


def _cursor(request: web.Request, opts: ListOptions, query: str) -> pagination.Cursor | None:
    if not opts.continue_token:
        return None
    try:
        return pagination.decode(opts.continue_token, query=query, key=request.app[CONTINUE_KEY])
    except pagination.BadContinue as exc:
        raise bad_request(str(exc)) from exc


async def _list_page(request: web.Request, req: Request, opts: ListOptions, target: Target,
                     catalog: Catalog) -> web.Response:
    query = _query_fingerprint(request, opts, target)
    cursor = _cursor(request, opts, query)
    page = await _read_page(request, target, limit=opts.limit, cursor=cursor)
    if cursor is None:
        check_resource_version(opts, page.resource_version)
    token = None
    if page.more and target.search.with_continue:
        after = cursor_of(order_keys(target.search.order), page.rows[-1])
        token = pagination.encode(pagination.Cursor(resource_version=page.resource_version, after=after),
                                  query=query, key=request.app[CONTINUE_KEY])
    meta = render.list_meta(resource_version=page.resource_version, continue_token=token,
                            remaining=page.remaining)
    body = render.shaped_list(opts.shape, req.rtype, meta, [(r["cluster"], r["json"]) for r in page.rows],
                              include=opts.include_object, table=_table(req, catalog))
    response = web.Response(body=body, content_type="application/json")
    _warned(response, catalog, req.cluster, clusters_read(target, scope_of(request)))
    return response


async def _stream_rows(request: web.Request, target: Target,
                       first: list[asyncpg.Record]) -> AsyncIterator[list[asyncpg.Record]]:
    rows = first
    while True:
        yield rows
        if len(rows) < STREAM_PAGE:
            return
        async with read_pool(request).acquire() as conn:
            after = cursor_of(order_keys(target.search.order), rows[-1])
            rows = await _page(conn, target, request, limit=STREAM_PAGE, after=after)


async def _list_all(request: web.Request, req: Request, opts: ListOptions, target: Target,
                    catalog: Catalog) -> web.StreamResponse:
    """Everything, in any shape, streamed in keyset pages: memory stays flat however large
    the list."""
    rv, first = await _first(request, target, limit=STREAM_PAGE)
    check_resource_version(opts, rv)
    meta = render.list_meta(resource_version=rv, continue_token=None)
    table = _table(req, catalog)
    stream = web.StreamResponse(headers={"Content-Type": "application/json"})
    _warned(stream, catalog, req.cluster, clusters_read(target, scope_of(request)))
    await stream.prepare(request)
    await stream.write(render.shaped_prefix(opts.shape, req.rtype, meta, table=table))
    separator = b""
    async for page in _stream_rows(request, target, first):
        if page:
            items = render.shaped_items(opts.shape, [(r["cluster"], r["json"]) for r in page],
                                        include=opts.include_object, table=table)
            await stream.write(separator + items)
            separator = b","
    await stream.write(render.LIST_SUFFIX)
    await stream.write_eof()
    return stream


async def get_object(request: web.Request) -> web.Response:
    req, catalog = await resolve(request)
    authorize(request, verb="get", rtype=req.rtype, namespace=req.namespace, cluster=req.cluster,
              name=req.name)
    if request.query.get(AS_OF):  # history: not silently the current object (apiserver.asof)
        raise bad_request("asOf applies to lists: list with fieldSelector=metadata.name=NAME")
    include = {"includeObject": request.query["includeObject"]} if "includeObject" in request.query else {}
    opts = list_options(include, request.headers.get("Accept", ""))
    target = target_of(req, opts)
    sql, params = compiled(get_statement(target, scope_of(request), limit=GET_CANDIDATES))
    rows = await read_pool(request).fetch(sql, *params)
    if not rows:
        raise StatusError(404, "NotFound", f'{req.rtype.key} "{req.name}" not found',
                          {"name": req.name, "group": req.rtype.group, "kind": req.rtype.resource})
    if len(rows) > 1:
        names = ", ".join(r["cluster"] for r in rows)
        raise StatusError(409, "Conflict", f'{req.rtype.key} "{req.name}" exists in several clusters'
                          f" ({names}); ask one cluster: /clusters/NAME/... or its kubeconfig context",
                          {"name": req.name, "group": req.rtype.group, "kind": req.rtype.resource,
                           "causes": [{"reason": "FieldValueDuplicate", "field": "cluster",
                                       "message": r["cluster"]} for r in rows]})
    row = rows[0]
    body = render.shaped_object(opts.shape, row["cluster"], row["json"], include=opts.include_object,
                                table=_table(req, catalog))
    response = web.Response(body=body, content_type="application/json")
    _warned(response, catalog, row["cluster"], None)
    return response


def object_routes(prefix: str) -> list[tuple[str, Any]]:
    """(path, handler) pairs for the object paths under ``prefix``."""
    out: list[tuple[str, Any]] = []
    for base in ("/api/{version}", "/apis/{group}/{version}"):
        out += [
            (f"{prefix}{base}/{{resource}}", list_objects),
            (f"{prefix}{base}/{{resource}}/{{name}}", get_object),
            (f"{prefix}{base}/namespaces/{{namespace}}/{{resource}}", list_objects),
            (f"{prefix}{base}/namespaces/{{namespace}}/{{resource}}/{{name}}", get_object),
        ]
    return out
