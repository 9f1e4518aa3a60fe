"""Clusterpedia-compatible collection resources: several types in one paged list.

``GET /apis/clusterpedia.io/v1beta1/collectionresources`` lists the collections
(``workloads``, ``kuberesources``, ``any``) and the types each holds;
``GET /apis/clusterpedia.io/v1beta1/collectionresources/{name}`` is a
``CollectionResource`` whose ``items`` are objects of those types from every cluster, in
the order (group, resource, namespace, name, cluster), paged with ``limit`` and our signed
``continue`` tokens (``apiserver.pagination``), and answered from PostgreSQL through
``apiserver.query_collections``. Clusterpedia's facts carried over
(pkg/storage/internalstorage/collectionresource*.go, registry/clusterpedia/collectionresources):

- ``workloads`` holds apps/deployments, daemonsets and statefulsets; ``kuberesources``
  every built-in Kubernetes group (``KUBE_GROUPS``); ``any`` no fixed type: a request
  names them with ``groups=`` (``apps``, ``apps/v1``; ``/`` or an empty entry is the core
  group; ``*`` every type) and ``resources=`` (``apps/deployments``,
  ``apps/v1/deployments``; a bare ``pods`` or ``/pods`` is core).
- A Table has the columns Cluster, Group, Version, Kind, Namespace, Name, Age (a
  collection) or Name, Resources (the list), and is read with ``onlyMetadata``.
- Every type is filtered as its list is: each becomes a ``query.Target`` with the
  request's ``labelSelector``, ``fieldSelector``, ``clusters=`` and Clusterpedia's search
  conditions (``apiserver.search``: ``namespaces``, ``names``, fuzzy names, owner,
  ``since``/``before``, as parameters or labels), within the caller's scope; ``orderby``
  is a 400, since a collection has one order.

Decided here: ``groups=``/``resources=`` narrow ``workloads`` and ``kuberesources`` too
(Clusterpedia ignores them there); an entry that names no type of the collection that
the caller may read is a 400 naming it (an unknown type and a type outside the caller's
scope read alike); pages carry a ``continue`` token unless ``withContinue=false`` (keyset,
never Clusterpedia's offsets); ``remainingItemCount`` is counted, exactly, only with
``withRemainingCount=true``; without ``limit`` everything is streamed in keyset pages; an
item's apiVersion and kind come from its row, so that a mixed page says what each item is.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from multidict import MultiMapping

from apiserver import horizon, pagination, render
from apiserver.catalog import Catalog
from apiserver.keys import CATALOG, CONTINUE_KEY, scope_of
from apiserver.params import (
    MAX_LIMIT,
    ListOptions,
    bad_request,
    check_resource_version,
    field_selector,
    label_selector,
    list_options,
)
from apiserver.query import CLUSTER_ANNOTATION, Scope, Target, compiled
from apiserver.query_collections import page_statement, remaining_statement
from apiserver.replicas import read_pool
from apiserver.search import Search, search_options
from apiserver.served import warn
from kube.media import TABLE
from kube.resources import ResourceType
from kube.selectors import LabelSelector
from kube.status import StatusError
from kube.tables import TablePrinter, age

JSON = dict[str, Any]
GROUP = "clusterpedia.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
RESOURCE = "collectionresources"
BASE = f"/apis/{API_VERSION}/{RESOURCE}"
STREAM_PAGE = 1000  # rows per query when the whole collection is asked for
MAX_ENTRIES = 100  # entries in groups= and resources= together

# The groups kube-apiserver (with its apiextensions and aggregator parts) serves: what
# Clusterpedia's kuberesources holds (its LegacyResourceScheme's groups).
KUBE_GROUPS = (
    "", "admission.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io", "apiregistration.k8s.io",
    "apps", "authentication.k8s.io", "authorization.k8s.io", "autoscaling", "batch", "certificates.k8s.io",
    "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io", "extensions",
    "flowcontrol.apiserver.k8s.io", "imagepolicy.k8s.io", "internal.apiserver.k8s.io", "networking.k8s.io",
    "node.k8s.io", "policy", "rbac.authorization.k8s.io", "resource.k8s.io", "scheduling.k8s.io",
    "storage.k8s.io", "storagemigration.k8s.io",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Definition:
    """A collection: fixed types, fixed groups, or (neither) the types a request names."""

    name: str
    types: tuple[tuple[str, str], ...] = ()  # (group, resource)
    groups: tuple[str, ...] = ()

    @property
    def open(self) -> bool:
        return not self.types and not self.groups

    def holds(self, t: ResourceType) -> bool:
        return self.open or (t.group, t.resource) in self.types or t.group in self.groups


DEFINITIONS = {d.name: d for d in (
    Definition(name="any"),
    Definition(name="workloads", types=(("apps", "deployments"), ("apps", "daemonsets"),
                                        ("apps", "statefulsets"))),
    Definition(name="kuberesources", groups=KUBE_GROUPS),
)}


# -- groups= and resources= -----------------------------------------------------------------------

_GROUP = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, kw_only=True, slots=True)
class Entry:
    """One entry of ``groups=`` or ``resources=``: what it names (None: any)."""

    param: str
    text: str
    group: str | None  # None only for "*"
    version: str | None = None
    resource: str | None = None

    def matches(self, t: ResourceType) -> bool:
        return (self.group in (None, t.group) and self.version in (None, t.version)
                and self.resource in (None, t.resource))


def _checked(entry: Entry) -> Entry:
    parts = ((entry.group, _GROUP), (entry.version, _LABEL), (entry.resource, _LABEL))
    for value, pattern in parts:
        if value and not pattern.match(value):
            raise bad_request(f"{entry.param}: {entry.text[:120]!r} is not a valid"
                              f" {'group' if entry.param == 'groups' else 'resource'}: expected"
                              f" {_FORMS[entry.param]}")
    return entry


_FORMS = {"groups": "GROUP or GROUP/VERSION ('/' for the core group, '*' for every group)",
          "resources": "GROUP/RESOURCE or GROUP/VERSION/RESOURCE (a bare RESOURCE for the core group)"}


def _group_entry(text: str) -> Entry:
    if text == "*":
        return Entry(param="groups", text=text, group=None)
    group, _, version = text.partition("/")
    if version.count("/"):
        raise bad_request(f"groups: {text[:120]!r}: expected {_FORMS['groups']}")
    return _checked(Entry(param="groups", text=text, group=group, version=version or None))


def _resource_entry(text: str) -> Entry:
    parts = text.split("/")
    if len(parts) == 1:
        parts = ["", "", parts[0]]
    elif len(parts) == 2:
        parts = [parts[0], "", parts[1]]
    if len(parts) != 3 or not parts[2]:
        raise bad_request(f"resources: {text[:120]!r}: expected {_FORMS['resources']}")
    group, version, resource = parts
    return _checked(Entry(param="resources", text=text, group=group, version=version or None,
                          resource=resource))


def entries(query: MultiMapping[str]) -> tuple[Entry, ...]:
    """``groups=`` and ``resources=`` as Clusterpedia reads them (resolveGVRsFromURLQuery):
    comma separated, spaces ignored; every occurrence of the parameter counts."""
    out: list[Entry] = []
    for param, parse in (("groups", _group_entry), ("resources", _resource_entry)):
        for value in query.getall(param, []):
            texts = value.replace(" ", "").split(",")
            if len(out) + len(texts) > MAX_ENTRIES:
                raise bad_request(f"{param}: at most {MAX_ENTRIES} entries in groups and resources together")
            out += [parse(text) for text in texts]
    return tuple(out)


# -- which types a request reads ------------------------------------------------------------------

def readable(definition: Definition, catalog: Catalog, scope: Scope) -> list[ResourceType]:
    """The served types of a collection that the caller may read."""
    return [t for t in catalog.types if definition.holds(t) and scope.allows_type(t.group, t.resource)]


def chosen_types(definition: Definition, catalog: Catalog, scope: Scope,
                 wanted: Sequence[Entry]) -> list[ResourceType]:
    """The types a request reads: the collection's readable types, narrowed by ``wanted``.
    An entry that matches none of them is a 400 naming it: a type the caller may not read
    is answered as one that does not exist."""
    if definition.open and not wanted:
        raise bad_request(f"collection {definition.name}: give groups= and/or resources= (for example"
                          " groups=apps,batch or resources=apps/deployments,pods)")
    types = readable(definition, catalog, scope)
    if not wanted:
        return types
    for entry in wanted:
        if entry.group is not None and not any(entry.matches(t) for t in types):  # "*" may match none
            raise bad_request(f"{entry.param}: {entry.text[:120]!r} names no type of the collection"
                              f" {definition.name} that is served here")
    return [t for t in types if any(entry.matches(t) for entry in wanted)]


@dataclass(frozen=True, kw_only=True, slots=True)
class Options:
    """A collection request's parameters: a list's, its search conditions (``apiserver.search``:
    names, namespaces, fuzzy names, owner, since/before, and what a page carries), and the
    types it names."""

    lists: ListOptions
    labels: LabelSelector  # without the search conditions given as labels
    search: Search
    entries: tuple[Entry, ...]
    only_metadata: bool

    @property
    def limit(self) -> int:
        """0: everything. ``search.clusterpedia.io/limit`` stands for a missing ``limit``."""
        return self.lists.limit or min(self.search.limit or 0, MAX_LIMIT)


def options(request: web.Request) -> Options:
    query = request.query
    lists = list_options(query, request.headers.get("Accept", ""))
    if lists.watch:
        raise StatusError(405, "MethodNotAllowed", f"{RESOURCE} cannot be watched: get or list them")
    search, labels = search_options(query, label_selector(lists.label_selector))
    if search.order:
        raise bad_request(f"orderby: not supported with {RESOURCE}: they are ordered by group, resource,"
                          " namespace, name and cluster")
    # A Table shows metadata only: Clusterpedia reads it with onlyMetadata.
    table_metadata = lists.shape == TABLE and lists.include_object != "Object"
    return Options(lists=lists, labels=labels, search=search, entries=entries(query),
                   only_metadata=search.only_metadata or table_metadata)


def targets(types: Iterable[ResourceType], opts: Options) -> list[Target]:
    """One list target per type, with the request's selectors and search conditions (a
    field selector is read for each kind, as a list of that kind reads it)."""
    search = opts.search
    clusters = search.clusters if search.clusters is not None else opts.lists.clusters
    return [Target(group=t.group, version=t.version, resource=t.resource, kind=t.kind,
                   clusters=clusters, namespaces=search.namespaces, names=search.names,
                   labels=opts.labels, search=search,
                   fields=field_selector(opts.lists.field_selector, t.kind))
            for t in types]


# -- reading pages --------------------------------------------------------------------------------

Key = tuple[str, str, str, str, str]


def _key(row: asyncpg.Record) -> Key:
    return (row["grp"], row["resource"], row["namespace"], row["name"], row["cluster"])


def _unselective(chosen: Sequence[Target]) -> bool:
    """Whether only the type, the place and names narrow the objects: conditions on the
    columns of the list order, which a scan of it checks in the index."""
    return not any(t.selective() for t in chosen)


async def in_index_order(conn: asyncpg.Connection, chosen: Sequence[Target]) -> None:
    """Without selectors, have this transaction read a page in index order, with no sort.

    PostgreSQL underestimates how many objects a set of types holds (it takes group,
    resource and version for independent; each type's conditions and the index bounds
    multiply), and for a few types of different groups it chose to sort every object of
    them for each page (measured at 101,000 objects: a bitmap OR and a sort of 18,000,
    157 ms for a page of 500, against 32 ms in index order). Without selectors every object
    of the types matches, so reading in order reads the page and little else. With
    selectors the planner keeps its choice: a rare label is best found by its index and its
    few matches sorted."""
    if _unselective(chosen):
        await conn.execute("SET LOCAL enable_sort = off; SET LOCAL enable_incremental_sort = off")


@contextlib.asynccontextmanager
async def _reading(request: web.Request, chosen: Sequence[Target], *, isolation: str = "read_committed",
                   with_horizon: bool = False,
                   at_least: int | None = None) -> AsyncIterator[tuple[asyncpg.Connection, int]]:
    """A read-only transaction for a page, and (``with_horizon``) the change-log horizon read
    before its snapshot (``apiserver.horizon``; else 0)."""
    async with horizon.snapshot(read_pool(request), isolation=isolation,
                                with_horizon=with_horizon, at_least=at_least) as (conn, seen):
        await in_index_order(conn, chosen)
        yield conn, seen or 0


async def _rows(conn: asyncpg.Connection, request: web.Request, chosen: Sequence[Target], *, limit: int,
                after: Key | None, only_metadata: bool) -> list[asyncpg.Record]:
    stmt = page_statement(chosen, scope_of(request), limit=limit, after=after, only_metadata=only_metadata)
    sql, params = compiled(stmt)
    rows: list[asyncpg.Record] = await conn.fetch(sql, *params)
    return rows


def cursor_key(cursor: pagination.Cursor | None) -> Key | None:
    if cursor is None:
        return None
    if len(cursor.after) != 5:  # signed by us, but for another kind of walk
        raise bad_request("continue key does not belong to this query")
    group, resource, namespace, name, cluster = cursor.after
    return (group, resource, namespace, name, cluster)


@dataclass(frozen=True, kw_only=True, slots=True)
class Page:
    resource_version: int  # the walk's: the horizon read before its first page's snapshot
    rows: list[asyncpg.Record]
    more: bool
    remaining: int | None  # counted when asked for


async def first_page(request: web.Request, chosen: Sequence[Target], opts: Options, *, limit: int,
                     cursor: pagination.Cursor | None) -> Page:
    """Up to ``limit`` objects after the cursor, the sequence they reflect and, when asked,
    how many follow, in one snapshot."""
    after = cursor_key(cursor)
    async with _reading(request, chosen, isolation="repeatable_read",
                        with_horizon=cursor is None,
                        at_least=cursor.resource_version if cursor else None) as (conn, current):
        rows = await _rows(conn, request, chosen, limit=limit + 1, after=after,
                           only_metadata=opts.only_metadata)
        more, rows = len(rows) > limit, rows[:limit]
        remaining = None
        if opts.search.with_remaining_count:
            remaining = await _remaining(conn, request, chosen, rows[-1] if more else None)
    return Page(resource_version=cursor.resource_version if cursor else current, rows=rows, more=more,
                remaining=remaining)


async def _remaining(conn: asyncpg.Connection, request: web.Request, chosen: Sequence[Target],
                     last: asyncpg.Record | None) -> int:
    if last is None:
        return 0
    sql, params = compiled(remaining_statement(chosen, scope_of(request), after=_key(last)))
    return int(await conn.fetchval(sql, *params))


async def later_pages(request: web.Request, chosen: Sequence[Target], opts: Options,
                      first: Page) -> AsyncIterator[list[asyncpg.Record]]:
    """The pages after ``first`` when everything is asked for, each in its own transaction."""
    rows, more = first.rows, first.more
    while more:
        async with _reading(request, chosen) as (conn, _):
            rows = await _rows(conn, request, chosen, limit=STREAM_PAGE + 1, after=_key(rows[-1]),
                               only_metadata=opts.only_metadata)
        more, rows = len(rows) > STREAM_PAGE, rows[:STREAM_PAGE]
        if rows:
            yield rows


# -- rendering ------------------------------------------------------------------------------------

def _cells(obj: JSON) -> list[Any]:
    meta = obj.get("metadata") or {}
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    cluster = (meta.get("annotations") or {}).get(CLUSTER_ANNOTATION, "")
    return [cluster, group, version, obj.get("kind"), meta.get("namespace", ""), meta.get("name"),
            age(meta.get("creationTimestamp"))]


ITEM_TABLE = TablePrinter([("Cluster", "string", 0), ("Group", "string", 0), ("Version", "string", 0),
                           ("Kind", "string", 0), ("Namespace", "string", 0), ("Name", "string", 0),
                           ("Age", "string", 0)], _cells)


def _type_of(row: asyncpg.Record) -> JSON:
    return {"group": row["grp"], "version": row["version"], "resource": row["resource"], "kind": row["kind"]}


class Seen:
    """The types present on a page (or a streamed whole), in order of first appearance."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], JSON] = {}

    def add(self, rows: Iterable[asyncpg.Record]) -> None:
        for row in rows:
            self._types.setdefault((row["grp"], row["version"], row["resource"]), _type_of(row))

    def types(self) -> list[JSON]:
        return list(self._types.values())


def head(shape: str, name: str, meta: JSON) -> bytes:
    """The body up to its array's opening bracket. ``meta``: resourceVersion and, for a
    page, continue and remainingItemCount (a Table carries them in its ListMeta)."""
    if shape == TABLE:
        body = orjson.dumps({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                             "columnDefinitions": ITEM_TABLE.column_definitions()})
        return body[:-1] + b',"rows":['
    body = orjson.dumps({"kind": "CollectionResource", "apiVersion": API_VERSION,
                         "metadata": {"name": name, "resourceVersion": meta["resourceVersion"]}})
    return body[:-1] + b',"items":['


def items(shape: str, rows: Sequence[asyncpg.Record], include: str) -> bytes:
    if shape == TABLE:
        return b",".join(orjson.dumps(ITEM_TABLE.row(orjson.loads(r["json"]), include)) for r in rows)
    return ",".join(r["json"] for r in rows).encode()


def tail(shape: str, seen: Seen, meta: JSON) -> bytes:
    """The rest of the body: for a CollectionResource its resourceTypes, and continue and
    remainingItemCount where its ListMeta would have them."""
    if shape == TABLE:
        return b"]}"
    rest: JSON = {"resourceTypes": seen.types()}
    if "continue" in meta:
        rest["continue"] = meta["continue"]
    if "remainingItemCount" in meta:
        rest["remainingItemCount"] = meta["remainingItemCount"]
    return b"]," + orjson.dumps(rest)[1:]


# -- handlers -------------------------------------------------------------------------------------

def _not_found(name: str) -> StatusError:
    return StatusError(404, "NotFound", f'{RESOURCE}.{GROUP} "{name[:253]}" not found',
                       {"name": name[:253], "group": GROUP, "kind": RESOURCE})


def _fingerprint(request: web.Request, opts: Options, chosen: Sequence[Target]) -> str:
    wanted = sorted((e.param, e.group, e.version, e.resource) for e in opts.entries)
    clusters = chosen[0].clusters if chosen else opts.lists.clusters
    return pagination.fingerprint([request.path, opts.lists.label_selector, opts.lists.field_selector,
                                   sorted(clusters or ()), [list(w) for w in wanted],
                                   *opts.search.fingerprint()])


def _cursor(request: web.Request, opts: Options, query: str) -> pagination.Cursor | None:
    if not opts.lists.continue_token:
        return None
    try:
        return pagination.decode(opts.lists.continue_token, query=query, key=request.app[CONTINUE_KEY])
    except pagination.BadContinue as exc:
        raise bad_request(str(exc)) from exc


def _warnings(response: web.StreamResponse, catalog: Catalog, scope: Scope, opts: ListOptions) -> None:
    """A Warning per stale cluster the request reads (and only those the caller may read)."""
    warn(response, [state.warning() for name, state in sorted(catalog.clusters.items())
                    if state.stale and scope.allows_cluster(name)
                    and (opts.clusters is None or name in opts.clusters)])


async def get_collection(request: web.Request) -> web.StreamResponse:
    definition = DEFINITIONS.get(request.match_info["name"])
    if definition is None:
        raise _not_found(request.match_info["name"])
    opts = options(request)
    catalog = await request.app[CATALOG].get()
    scope = scope_of(request)
    chosen = targets(chosen_types(definition, catalog, scope, opts.entries), opts)
    query = _fingerprint(request, opts, chosen)
    cursor = _cursor(request, opts, query)
    page = await first_page(request, chosen, opts, limit=opts.limit or STREAM_PAGE, cursor=cursor)
    if cursor is None:
        # A collection always reflects the latest state, as a list does.
        check_resource_version(opts.lists, page.resource_version, what="collection",
                               again="get it without resourceVersion")
    if not opts.limit:
        return await _stream(request, definition, opts, chosen, page, catalog)
    meta = render.list_meta(resource_version=page.resource_version, continue_token=None,
                            remaining=page.remaining)
    if page.more and opts.search.with_continue:
        meta["continue"] = pagination.encode(
            pagination.Cursor(resource_version=page.resource_version, after=_key(page.rows[-1])),
            query=query, key=request.app[CONTINUE_KEY])
    seen = Seen()
    seen.add(page.rows)
    shape = opts.lists.shape if opts.lists.shape == TABLE else ""
    body = (head(shape, definition.name, meta) + items(shape, page.rows, opts.lists.include_object)
            + tail(shape, seen, meta))
    response = web.Response(body=body, content_type="application/json")
    _warnings(response, catalog, scope, opts.lists)
    return response


async def _stream(request: web.Request, definition: Definition, opts: Options, chosen: Sequence[Target],
                  first: Page, catalog: Catalog) -> web.StreamResponse:
    """The whole collection, written page by page: memory stays flat however large it is."""
    meta = render.list_meta(resource_version=first.resource_version, continue_token=None,
                            remaining=0 if opts.search.with_remaining_count else None)
    shape = opts.lists.shape if opts.lists.shape == TABLE else ""
    stream = web.StreamResponse(headers={"Content-Type": "application/json"})
    _warnings(stream, catalog, scope_of(request), opts.lists)
    await stream.prepare(request)
    await stream.write(head(shape, definition.name, meta))
    seen = Seen()
    seen.add(first.rows)
    await stream.write(items(shape, first.rows, opts.lists.include_object))
    separator = b"," if first.rows else b""
    async for rows in later_pages(request, chosen, opts, first):
        seen.add(rows)
        await stream.write(separator + items(shape, rows, opts.lists.include_object))
        separator = b","
    await stream.write(tail(shape, seen, meta))
    await stream.write_eof()
    return stream


# -- the list of collections ----------------------------------------------------------------------

def _types_of(definition: Definition, catalog: Catalog, scope: Scope) -> list[JSON]:
    """A collection's resourceTypes: a fixed type in every version served (with its kind),
    or with no version while none is; a fixed group as itself (Clusterpedia's
    kuberesources), when the caller may read some type of it."""
    out: list[JSON] = []
    for group, resource in definition.types:
        if not scope.allows_type(group, resource):
            continue
        served = [t for t in catalog.types if (t.group, t.resource) == (group, resource)]
        out += [{"group": t.group, "version": t.version, "resource": t.resource, "kind": t.kind}
                for t in served]
        if not served:
            out.append({"group": group, "version": "", "resource": resource})
    for group in definition.groups:
        if scope.allows_group(group):
            out.append({"group": group, "version": "", "resource": ""})
    return out


def _resources_cell(types: Sequence[JSON]) -> str:
    """Clusterpedia's Resources column: GROUP.RESOURCE, * for a whole group or an open collection."""
    if not types:
        return "*"
    names = dict.fromkeys(f"{t['group']}.{t['resource'] or '*'}" for t in types)
    return ",".join(names)


LIST_TABLE = TablePrinter([("Name", "string", 0), ("Resources", "string", 0)],
                          lambda obj: [obj["metadata"]["name"], _resources_cell(obj["resourceTypes"])])


async def list_collections(request: web.Request) -> web.Response:
    opts = options(request)
    catalog = await request.app[CATALOG].get()
    scope = scope_of(request)
    collections = [{"kind": "CollectionResource", "apiVersion": API_VERSION, "metadata": {"name": d.name},
                    "resourceTypes": _types_of(d, catalog, scope)} for d in DEFINITIONS.values()]
    if opts.lists.shape == TABLE:
        body = LIST_TABLE.table(collections, {}, opts.lists.include_object)
    else:
        body = {"kind": "CollectionResourceList", "apiVersion": API_VERSION, "metadata": {},
                "items": collections}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def collection_routes() -> list[tuple[str, Any]]:
    """(path, handler) pairs; registered before the generic object paths they would match."""
    return [(BASE, list_collections), (f"{BASE}/{{name}}", get_collection)]
