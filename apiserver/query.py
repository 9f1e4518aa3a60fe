"""The one place where read queries are composed: a parsed request and the caller's scope in,
parameterized SQL out.

Handlers never write SQL. Every value from a request reaches PostgreSQL as a bound
parameter; the only SQL text built from data is the JSON path of a selectable field,
and those paths come from ``kube.selectors``' fixed table, checked again here. A field
condition on any other JSON path (``kube.fieldpaths``) is a SQL/JSON path passed as a
bound parameter, its values in a bound ``vars`` object.

Order and pages: every list is ordered by ``(namespace, name, cluster)``, which is unique
within one type and version and is served, column for column, by the index
``resources_list_order`` (grp, resource, namespace, name, cluster); with one cluster the
primary key serves it. Pages continue with ``(namespace, name, cluster) > (...)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, JSONPATH
from sqlalchemy.dialects.postgresql import asyncpg as pg_dialect
from sqlalchemy.sql.elements import ColumnElement

# Re-exported: the query modules and their tests take the scope from here.
from apiserver.scope import EVERYTHING_SCOPE as EVERYTHING_SCOPE
from apiserver.scope import Scope as Scope
from apiserver.scope import one_of as one_of
from apiserver.scope import scope_conditions as scope_conditions
from apiserver.search import NO_SEARCH, OrderBy, Owner, Search
from kube.fieldpaths import PathRequirement, Step, json_number
from kube.selectors import (
    EVERYTHING,
    NO_FIELDS,
    AnyFieldRequirement,
    FieldSelector,
    LabelSelector,
    Requirement,
    field_default,
    field_path,
)
from syncer.schema import change_log, resource_keys, resources

CLUSTER_ANNOTATION = "kubepedia.io/cluster"
CLUSTERPEDIA_ANNOTATION = "shadow.clusterpedia.io/cluster-name"
# In watch events the object's resourceVersion is the change's sequence (what a client
# resumes from); the member cluster's own is kept under this annotation.
MEMBER_VERSION_ANNOTATION = "kubepedia.io/resource-version"
_DIALECT = pg_dialect.dialect()  # type: ignore[no-untyped-call]
_PATH_PART = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_INTEGER_TEXT = r"^-?[0-9]{1,18}$"
ORDER_COLUMNS = (resources.c.namespace, resources.c.name, resources.c.cluster)
# Label keys with an index in list order (migration 4): the keys dashboards and kubectl
# users select by. Values are the SQL literals of the keys (fixed text, never a request's).
ORDERED_LABEL_KEYS = {"app": "app", "app.kubernetes.io/name": "app.kubernetes.io/name"}




@dataclass(frozen=True, kw_only=True, slots=True)
class Target:
    """Which objects a request names: one type and version, optionally narrowed."""

    group: str
    version: str
    resource: str
    kind: str
    cluster: str | None = None
    clusters: frozenset[str] | None = None  # a set of clusters asked for (``clusters=``)
    namespace: str | None = None
    name: str | None = None
    namespaces: frozenset[str] | None = None  # ``namespaces=``
    names: frozenset[str] | None = None  # ``names=``
    labels: LabelSelector = EVERYTHING
    fields: FieldSelector = NO_FIELDS
    search: Search = NO_SEARCH  # the other search conditions, the order, what a page carries
    # Whether a pod's images may be too long for ``pod_images`` (NULL there): then a container
    # image condition must also read those pods' objects. PostgreSQL takes that "or NULL" for
    # every row whose column is NULL (all but pods) and would walk the whole list order
    # instead of the image index; a reader that has checked, in its snapshot, that there are
    # no such pods says so here.
    unindexed_images: bool = True

    def selective(self) -> bool:
        """Whether a condition other than type, place and name list narrows the objects."""
        return not (self.labels.empty() and self.fields.empty()) or self.search.narrows()


# -- conditions ---------------------------------------------------------------------------------

def _label_condition(req: Requirement,
                     labels: ColumnElement[Any] = resources.c.labels) -> ColumnElement[bool]:
    match req.op:
        case "exists":
            has: ColumnElement[bool] = labels.has_key(req.key)
            return has
        case "!":
            lacks: ColumnElement[bool] = sa.not_(labels.has_key(req.key))
            return lacks
        case "=" if req.key in ORDERED_LABEL_KEYS and labels is resources.c.labels:
            # The key as a constant from our own list, so that its index (in list order) can
            # read a page of a common label without filtering the whole order.
            value = labels.op("->>")(sa.literal_column("'" + ORDERED_LABEL_KEYS[req.key] + "'"))
            return value == req.values[0]
        case "=" | "in":
            return sa.or_(*(labels.contains({req.key: v}) for v in req.values))
        case "!=" | "notin":
            return sa.not_(sa.or_(*(labels.contains({req.key: v}) for v in req.values)))
        case "gt" | "lt":
            text = labels[req.key].astext
            number = sa.case((text.regexp_match(_INTEGER_TEXT), sa.cast(text, sa.BigInteger)))
            bound = int(req.values[0])
            return number > bound if req.op == "gt" else number < bound
    raise AssertionError(req.op)  # pragma: no cover - the Literal is exhaustive


def field_expression(kind: str, field: str, table: sa.FromClause = resources) -> ColumnElement[Any]:
    """The SQL expression of a selectable field: a column, or the field's JSON path as a
    constant (so that an expression index on it can serve the query). ``table`` is
    ``resources`` or a relation with the same ``namespace``, ``name`` and ``object``."""
    if field == "metadata.name":
        return table.c.name
    if field == "metadata.namespace":
        return table.c.namespace
    parts = field_path(kind, field)
    if not all(_PATH_PART.match(p) for p in parts):  # never: the paths are our own constants
        raise ValueError(f"unexpected field path {field!r}")
    return table.c.object.op("#>>")(sa.literal_column("'{" + ",".join(parts) + "}'"))


def _field_condition(kind: str, req: AnyFieldRequirement, table: sa.FromClause = resources, *,
                     unindexed_images: bool = True) -> ColumnElement[bool]:
    if isinstance(req, PathRequirement):
        return _path_condition(kind, req, table, unindexed_images=unindexed_images)
    expr = field_expression(kind, req.field, table)
    # A missing field reads as its default ("" for strings, "false" or "0" where kube-apiserver
    # renders a typed zero: kube.selectors.FIELD_DEFAULTS). Compare with coalesce only where
    # the default is a value asked for, so that the plain expression (and its index) serves
    # the usual case; `field_values` does the same for watches, in memory.
    default = field_default(kind, req.field)
    choices = req.choices()
    positive = req.op in ("=", "in")
    if default in choices:
        absent_or_equal = _among(sa.func.coalesce(expr, default), choices)
        return absent_or_equal if positive else sa.not_(absent_or_equal)
    if positive:
        return _among(expr, choices)
    if len(choices) == 1:
        return expr.is_distinct_from(choices[0])
    return sa.not_(_among(sa.func.coalesce(expr, default), choices))


def _among(expr: ColumnElement[Any], choices: Sequence[str]) -> ColumnElement[bool]:
    return expr == choices[0] if len(choices) == 1 else one_of(expr, frozenset(choices))


# -- conditions on any JSON path (kube.fieldpaths) -------------------------------------------
# Each is a strict-mode SQL/JSON path, a bound parameter like its values. Strict, because
# lax mode unwraps lists on its own ('$.spec.containers.image' would reach every image,
# and '@ == $v' on a list compares its elements): a path reaches exactly what
# kube.fieldpaths.reach finds. Strict mode raises where a key is missing or a step meets
# the wrong type, and one such error would end the whole search, so each step is guarded
# by a filter that lets only what it can step into pass: 'exists (@."k")' before a key,
# '@.type() == "array"' before [*]. Comparisons of different types are "unknown" there,
# which a filter drops: a string never equals a number, which is why the values come in
# three lists, strings, numbers and booleans, each compared with its own kind.
_PRESENT = ' ? (@.type() != "null")'
_EQUAL = " ? (@ == $s[*] || @ == $n[*] || @ == $b[*])"
_STRINGS = ' ? (@.type() == "string")'
POD_IMAGES_PATH: tuple[Step, ...] = ("spec", "containers", None, "image")


def jsonpath(path: Sequence[Step]) -> str:
    """The SQL/JSON path of a ``kube.fieldpaths`` path; every key is a JSON string literal."""
    out = ["strict $"]
    for step in path:
        if step is None:
            out.append(' ? (@.type() == "array")[*]')
        else:
            key = orjson.dumps(step).decode()
            out.append(f" ? (exists (@.{key})).{key}")
    return "".join(out)


def _path_exists(obj: ColumnElement[Any], path: str, variables: bytes) -> ColumnElement[bool]:
    found: ColumnElement[bool] = sa.func.jsonb_path_exists(
        obj, sa.cast(sa.literal(path, sa.Text), JSONPATH), sa.literal(variables, JSONB), type_=sa.Boolean)
    return found


def _equality_vars(values: Sequence[str]) -> bytes:
    # Numbers as their own text (checked JSON numbers): orjson would read them as floats.
    numbers = [orjson.Fragment(v.encode()) for v in values if json_number(v) is not None]
    booleans = [v == "true" for v in values if v in ("true", "false")]
    return orjson.dumps({"s": list(values), "n": numbers, "b": booleans})


def _path_condition(kind: str, req: PathRequirement, table: sa.FromClause, *,
                    unindexed_images: bool) -> ColumnElement[bool]:
    obj = table.c.object
    path = jsonpath(req.path)
    match req.op:
        case "exists" | "!":
            found = _path_exists(obj, path + _PRESENT, b"{}")
        case "=" | "in" | "!=" | "notin":
            found = _path_exists(obj, path + _EQUAL, _equality_vars(req.values))
        case "gt" | "lt" if req.number is not None:
            sign = ">" if req.op == "gt" else "<"
            bound = orjson.dumps({"n": orjson.Fragment(req.values[0].encode())})
            found = _path_exists(obj, path + f" ? (@ {sign} $n)", bound)
        case "gt" | "lt":
            found = _time_compared(obj, path, req)
    if req.op in ("!=", "notin", "!"):
        return sa.not_(found)
    narrowed = _pod_images(kind, req, table, unindexed=unindexed_images)
    return found if narrowed is None else sa.and_(narrowed, found)


def _time_compared(obj: ColumnElement[Any], path: str, req: PathRequirement) -> ColumnElement[bool]:
    """Some string the path reaches is an RFC 3339 time after (before) the bound, both read
    by kube_time (migration 6), which kube.fieldpaths.time_micros mirrors."""
    strings = sa.func.jsonb_path_query(obj, sa.cast(sa.literal(path + _STRINGS, sa.Text), JSONPATH))
    items = strings.table_valued(sa.column("item", JSONB)).render_derived(name="reached")
    when = sa.func.kube_time(items.c.item.op("#>>")(sa.literal_column("'{}'")))
    bound = sa.func.kube_time(sa.literal(req.values[0], sa.Text))
    return sa.exists(sa.select(1).select_from(items).where(when > bound if req.op == "gt" else when < bound))


def narrows_images(target: Target) -> bool:
    """Whether a request's conditions include a container image, which ``unindexed_images``
    sharpens: see ``Target.unindexed_images``."""
    return any(isinstance(req, PathRequirement) and _pod_images(target.kind, req, resources) is not None
               for req in target.fields.requirements)


def unindexed_images_statement() -> sa.Select[Any]:
    """Whether some pod's images were too long to index (``resources_pod_images_unbounded``,
    an index that is normally empty, answers it)."""
    c = resources.c
    return sa.select(sa.exists(sa.select(1).where(c.grp == "", c.resource == "pods", c.pod_images.is_(None))))


def _pod_images(kind: str, req: PathRequirement, table: sa.FromClause, *,
                unindexed: bool = True) -> ColumnElement[bool] | None:
    """For a pod's container image: a condition the GIN index on ``pod_images`` answers
    (migration 8), which every match meets, or None. ``pod_images`` holds the image string
    of every container (init and ephemeral ones too: a superset) and is NULL when they
    are too long to index, so such pods pass to the exact check. A value that may match a
    number or a boolean is not narrowed: the column holds strings only."""
    if (kind != "Pod" or tuple(req.path) != POD_IMAGES_PATH or req.op not in ("=", "in")
            or "pod_images" not in table.c
            or any(json_number(v) is not None or v in ("true", "false") for v in req.values)):
        return None
    images = table.c.pod_images
    wanted = sa.literal(sorted(req.values), ARRAY(sa.Text))
    return sa.or_(images.overlap(wanted), images.is_(None)) if unindexed else images.overlap(wanted)


def types_condition(table: sa.FromClause, types: frozenset[tuple[str, str]]) -> ColumnElement[bool]:
    if not types:
        return sa.false()
    return sa.or_(*(sa.and_(table.c.grp == group, table.c.resource == resource)
                    for group, resource in sorted(types)))


def narrowing_conditions(target: Target, table: sa.FromClause) -> list[ColumnElement[bool]]:
    """The clusters, namespaces and names a request names, by path or parameter."""
    c = table.c
    where: list[ColumnElement[bool]] = []
    for column, values in ((c.cluster, target.clusters), (c.namespace, target.namespaces),
                           (c.name, target.names)):
        if values is not None:
            where.append(one_of(column, values))
    narrowed = ((c.cluster, target.cluster), (c.namespace, target.namespace), (c.name, target.name))
    for column, value in narrowed:
        if value is not None:
            where.append(column == value)
    return where


def _identity_conditions(target: Target, scope: Scope,
                         table: sa.Table | sa.Alias) -> list[ColumnElement[bool]]:
    """Type, scope, cluster, namespace and name: the same on ``resources`` and ``change_log``."""
    c = table.c
    return [c.grp == target.group, c.resource == target.resource, c.version == target.version,
            *scope_conditions(scope, table, of_type=(target.group, target.resource)),
            *narrowing_conditions(target, table)]


def clusters_read(target: Target, scope: Scope) -> frozenset[str] | None:
    """The clusters a request may read, or None for every one."""
    chosen = [s for s in (scope.of_type(target.group, target.resource).clusters(), target.clusters)
              if s is not None]
    return frozenset.intersection(*chosen) if chosen else None


def identity_matches(target: Target, scope: Scope, *, group: str, version: str, resource: str, cluster: str,
                     namespace: str, name: str) -> bool:
    """``_identity_conditions`` evaluated in memory, for changes a watch takes from the tail."""
    return (group == target.group and resource == target.resource and version == target.version
            and scope.allows(cluster=cluster, namespace=namespace, group=group, resource=resource)
            and (target.clusters is None or cluster in target.clusters)
            and (target.namespaces is None or namespace in target.namespaces)
            and (target.names is None or name in target.names)
            and target.cluster in (None, cluster) and target.namespace in (None, namespace)
            and target.name in (None, name))


# -- for states other than the current rows (apiserver.query_history) ---------------------------

def selector_conditions(target: Target, *, table: sa.FromClause,
                        labels: ColumnElement[Any]) -> list[ColumnElement[bool]]:
    """A request's label and field selectors on another relation holding objects (an
    object's state taken from the change log): ``labels`` is its labels as JSONB, never
    NULL, and ``table`` has ``namespace``, ``name`` and ``object`` columns."""
    where = [_label_condition(req, labels) for req in target.labels.requirements]
    where.extend(_field_condition(target.kind, req, table) for req in target.fields.requirements)
    return where


def conditions(target: Target, scope: Scope) -> list[ColumnElement[bool]]:
    """Every condition of a request on ``resources``, the scope's included."""
    where = _identity_conditions(target, scope, resources)
    where.extend(_label_condition(req) for req in target.labels.requirements)
    where.extend(_field_condition(target.kind, req, unindexed_images=target.unindexed_images)
                 for req in target.fields.requirements)
    where.extend(_search_conditions(target, scope))
    return where


# -- search conditions (apiserver.search) -------------------------------------------------------

def _like_pattern(text: str) -> str:
    """``%text%`` with LIKE's own characters in ``text`` taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _search_conditions(target: Target, scope: Scope) -> list[ColumnElement[bool]]:
    search, c = target.search, resources.c
    # Case-sensitive substrings, as Clusterpedia's LIKE: served by the trigram index
    # ``resources_name_trgm`` from three characters on.
    where: list[ColumnElement[bool]] = [c.name.like(_like_pattern(f), escape="\\")
                                        for f in search.fuzzy_names]
    if search.since is not None:
        where.append(c.created_at >= search.since)
    if search.before is not None:
        where.append(c.created_at < search.before)
    if search.owner is not None:
        where.append(_owner_condition(target, scope, search.owner))
    return where


def _owner_condition(target: Target, scope: Scope, owner: Owner) -> ColumnElement[bool]:
    """Objects whose controller (``owner_uid``) is the owner or, with seniority n, an object
    n generations below it; an owner and its dependents are paired within one cluster.
    Each generation is found through ``resources_owner_uid``, the owner by name through
    ``resources_type_ns_name`` (with its type) or ``resources_name_trgm``."""
    if owner.uid is not None and owner.seniority == 0:
        return resources.c.owner_uid == owner.uid
    level = resources.alias("owner0")
    if owner.uid is not None:
        where = [level.c.owner_uid == owner.uid]
        generations = owner.seniority - 1
    else:
        where = [level.c.name == owner.name]
        if owner.resource is not None:
            where += [level.c.grp == (owner.group or ""), level.c.resource == owner.resource]
            if not scope.allows_type(owner.group or "", owner.resource):
                where.append(sa.false())
        # An owner is in the dependents' namespace or cluster-scoped (Clusterpedia's rule).
        namespaces = target.namespaces if target.namespace is None else frozenset({target.namespace})
        if namespaces is not None:
            where.append(one_of(level.c.namespace, namespaces | {""}))
        generations = owner.seniority
    owners = sa.select(level.c.cluster, level.c.uid).where(*where, *scope_conditions(scope, level))
    for n in range(generations):
        below = resources.alias(f"owner{n + 1}")
        previous = owners.subquery(f"generation{n}")
        owners = (sa.select(below.c.cluster, below.c.uid)
                  .where(sa.tuple_(below.c.cluster, below.c.owner_uid).in_(
                      sa.select(previous.c.cluster, previous.c.uid)), *scope_conditions(scope, below)))
    return sa.tuple_(resources.c.cluster, resources.c.owner_uid).in_(owners)


# -- order and keyset pages ---------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class OrderKey:
    """One column of a list's order: its expression, direction, and how a cursor carries it."""

    name: str
    expr: ColumnElement[Any]
    desc: bool = False
    kind: str = "text"  # text | time | number


_NEVER: ColumnElement[Any] = sa.literal_column("'-infinity'::timestamptz")
# Non-null expressions, so that a keyset condition is a plain row comparison: an object
# without a creationTimestamp sorts first, one whose resourceVersion is not a number (a
# member cluster is free to use any string) as -1.
_ORDER_EXPRESSIONS: dict[str, tuple[ColumnElement[Any], str]] = {
    "cluster": (resources.c.cluster, "text"),
    "namespace": (resources.c.namespace, "text"),
    "name": (resources.c.name, "text"),
    "created_at": (sa.func.coalesce(resources.c.created_at, _NEVER), "time"),
    "resource_version": (sa.case((resources.c.resource_version.regexp_match("^[0-9]{1,30}$"),
                                  sa.cast(resources.c.resource_version, sa.Numeric)), else_=-1), "number"),
}
DEFAULT_ORDER = tuple(OrderKey(name=col.name, expr=col) for col in ORDER_COLUMNS)


def order_keys(order: Sequence[OrderBy]) -> tuple[OrderKey, ...]:
    """The full order of a list: the fields asked for, then namespace, name and cluster (those
    not asked for) in the direction of the last field, so the order is total and an index
    (``resources_order_created`` for created_at) can serve it in one direction."""
    if not order:
        return DEFAULT_ORDER
    keys = [OrderKey(name=o.field, expr=_ORDER_EXPRESSIONS[o.field][0], desc=o.desc,
                     kind=_ORDER_EXPRESSIONS[o.field][1]) for o in order]
    named = {o.field for o in order}
    keys += [OrderKey(name=col.name, expr=col, desc=order[-1].desc) for col in ORDER_COLUMNS
             if col.name not in named]
    return tuple(keys)


def _cursor_value(key: OrderKey, text: str) -> ColumnElement[Any]:
    if key.kind == "time":
        return sa.literal(datetime.fromisoformat(text), sa.DateTime(timezone=True))
    if key.kind == "number":
        return sa.literal(Decimal(text), sa.Numeric)
    return sa.literal(text, sa.Text)


def after_condition(keys: Sequence[OrderKey], values: Sequence[str]) -> ColumnElement[bool]:
    """The rows after the one whose sort key is ``values``. One direction: a row comparison,
    which an index in that order takes as its bound; mixed: its expanded form."""
    if len(values) != len(keys):
        raise ValueError("cursor does not fit the order")
    bounds = [_cursor_value(k, v) for k, v in zip(keys, values, strict=True)]
    if all(k.desc == keys[0].desc for k in keys):
        row, bound = sa.tuple_(*(k.expr for k in keys)), sa.tuple_(*bounds)
        return row < bound if keys[0].desc else row > bound
    alternatives = []
    for i, key in enumerate(keys):
        equal = [k.expr == b for k, b in zip(keys[:i], bounds[:i], strict=True)]
        alternatives.append(sa.and_(*equal, key.expr < bounds[i] if key.desc else key.expr > bounds[i]))
    return sa.or_(*alternatives)


def cursor_of(keys: Sequence[OrderKey], row: asyncpg.Record) -> tuple[str, ...]:
    """A row's sort key as text, for a continue token (see ``list_statement``'s columns)."""
    out = []
    for i in range(len(keys)):
        value = row[f"k{i}"]
        out.append(value.isoformat() if isinstance(value, datetime) else str(value))
    return tuple(out)


# -- statements ---------------------------------------------------------------------------------

def annotated(obj: ColumnElement[Any], cluster: ColumnElement[Any],
              seq: ColumnElement[Any] | None = None) -> ColumnElement[Any]:
    """``obj`` with the cluster annotations added, built by PostgreSQL (NULL stays NULL).
    With ``seq`` (watch events), its resourceVersion becomes that change-log sequence and
    the member cluster's moves to an annotation."""
    annotations = sa.func.coalesce(obj[("metadata", "annotations")], sa.text("'{}'::jsonb"))
    pairs: list[Any] = [CLUSTER_ANNOTATION, cluster, CLUSTERPEDIA_ANNOTATION, cluster]
    if seq is not None:
        pairs += [MEMBER_VERSION_ANNOTATION, obj[("metadata", "resourceVersion")].astext]
    result = sa.func.jsonb_set(obj, sa.text("'{metadata,annotations}'"),
                               annotations.op("||")(sa.func.jsonb_build_object(*pairs)))
    if seq is not None:
        result = sa.func.jsonb_set(result, sa.text("'{metadata,resourceVersion}'"),
                                   sa.func.to_jsonb(sa.cast(seq, sa.Text)))
    return result


def object_json(*, aggregated_version: bool = False) -> ColumnElement[Any]:
    """The stored object with the cluster annotations added (for watch events, with the
    sequence of its last change as resourceVersion)."""
    return annotated(resources.c.object, resources.c.cluster, resources.c.seq if aggregated_version else None)


def _only_metadata(obj: ColumnElement[Any]) -> ColumnElement[Any]:
    """``onlyMetadata=true``: the object's type and metadata, built before the annotations."""
    return sa.type_coerce(sa.func.jsonb_build_object(
        "apiVersion", obj["apiVersion"], "kind", obj["kind"], "metadata", obj["metadata"]), JSONB)


def list_statement(target: Target, scope: Scope, *, limit: int | None, after: Sequence[str] | None = None,
                   aggregated_version: bool = False) -> sa.Select[Any]:
    """One page of objects in the list's order (``order_keys``): namespace, name, cluster,
    the object as JSON text, and the sort key as ``k0``, ``k1``, ... (``cursor_of``)."""
    keys = order_keys(target.search.order)
    if target.search.only_metadata:
        obj = annotated(_only_metadata(resources.c.object), resources.c.cluster,
                        resources.c.seq if aggregated_version else None)
    else:
        obj = object_json(aggregated_version=aggregated_version)
    stmt = sa.select(*ORDER_COLUMNS, sa.cast(obj, sa.Text).label("json"),
                     *(k.expr.label(f"k{i}") for i, k in enumerate(keys)))
    narrow = _search_keys_conditions(target) if limit is not None else None
    if limit is not None and narrow is not None:
        return _objects_of(stmt, target, _search_keys_page(target, scope, narrow, limit=limit, after=after))
    if limit is not None and not target.search.order and narrows_images(target):
        # The matches of an image are found through its index, out of list order, and
        # sorted: sorted as keys, and only the page's objects made into JSON (each costs
        # about 40 us; a common image has thousands of pods).
        return _objects_of(stmt, target, _keys_page(target, scope, limit=limit, after=after))
    stmt = stmt.where(*conditions(target, scope))
    if after is not None:
        stmt = stmt.where(after_condition(keys, after))
    stmt = stmt.order_by(*(k.expr.desc() if k.desc else k.expr for k in keys))
    return stmt.limit(limit) if limit is not None else stmt


def _objects_of(stmt: sa.Select[Any], target: Target, page: sa.Subquery) -> sa.Select[Any]:
    """``stmt``'s columns for the rows whose keys ``page`` holds, in list order."""
    return (stmt.select_from(page.join(resources, sa.and_(
                resources.c.grp == target.group, resources.c.resource == target.resource,
                *(col == page.c[col.name] for col in ORDER_COLUMNS))))
            .order_by(*ORDER_COLUMNS))


def _keys_page(target: Target, scope: Scope, *, limit: int, after: Sequence[str] | None) -> sa.Subquery:
    """The keys (namespace, name, cluster) of a page in list order, read from ``resources``."""
    keys = sa.select(*ORDER_COLUMNS).where(*conditions(target, scope))
    if after is not None:
        keys = keys.where(after_condition(DEFAULT_ORDER, after))
    return keys.order_by(*ORDER_COLUMNS).limit(limit).subquery("page")


# A search whose candidates in ``resource_keys`` are at most this many is answered by
# sorting them; beyond, by walking the list order until a page matches (matches are then
# dense enough for that to stop soon).
MATCHES_SORTED = 10_000


def _search_keys_conditions(target: Target) -> list[ColumnElement[bool]] | None:
    """A search's conditions on ``resource_keys`` (migration 11) besides type, place and
    scope, when they are all it has and are exact there: pieces of the name, and images of
    a pod's spec.containers as strings (not when some pod's images were too long to index).
    None when the search is not one of those, or has another condition, or another order."""
    search, k = target.search, resource_keys.c
    if (search.order or search.since is not None or search.before is not None or search.owner is not None
            or not target.labels.empty()):
        return None
    where: list[ColumnElement[bool]] = [k.name.like(_like_pattern(f), escape="\\")
                                        for f in search.fuzzy_names]
    for req in target.fields.requirements:
        if not isinstance(req, PathRequirement) or target.unindexed_images:
            return None
        if _pod_images(target.kind, req, resources, unindexed=False) is None:
            return None
        where.append(k.container_images.overlap(sa.literal(sorted(req.values), ARRAY(sa.Text))))
    return where or None


def _search_keys_page(target: Target, scope: Scope, searched: list[ColumnElement[bool]], *, limit: int,
                      after: Sequence[str] | None) -> sa.Subquery:
    """The keys (namespace, name, cluster) of a search's page, from ``resource_keys``.

    Every candidate the search's index finds (trigram, images) is checked and the matches
    sorted, unless there are more than ``MATCHES_SORTED``: then the primary key is walked
    in list order. The choice is made on the count, in the statement, not left to the
    planner: PostgreSQL estimates a substring's matches at a fixed fraction of the rows,
    and walked the list order for pieces matching a few rows, or a few thousand far down
    the order (an image's pods are often all in one namespace)."""
    n = resource_keys
    keys = tuple(OrderKey(name=col.name, expr=n.c[col.name]) for col in ORDER_COLUMNS)
    where = [*_identity_conditions(target, scope, n), *searched]
    if after is not None:
        where.append(after_condition(keys, after))
    columns = [k.expr for k in keys]
    # Materialized, so that it is planned for all its rows (through the search's index)
    # while counting reads only as many as it needs.
    matches = sa.select(*columns).where(*where).cte("matches").prefix_with("MATERIALIZED")
    counted = (sa.select(sa.func.count()).select_from(
        sa.select(sa.literal(1)).select_from(matches).limit(MATCHES_SORTED + 1).subquery("counted"))
        .scalar_subquery())
    few = (sa.select(*(matches.c[k.name] for k in keys)).where(counted <= MATCHES_SORTED)
           .order_by(*(matches.c[k.name] for k in keys)).limit(limit))
    many = sa.select(*columns).where(*where, counted > MATCHES_SORTED).order_by(*columns).limit(limit)
    return sa.union_all(few, many).subquery("page")


def remaining_statement(target: Target, scope: Scope, *, after: Sequence[str],
                        cap: int | None) -> sa.Select[Any]:
    """How many objects follow ``after`` in the list's order, counted up to ``cap`` (None:
    exactly, for ``withRemainingCount=true``): a page's ``remainingItemCount``.

    With a cap, only for lists without selectors (Kubernetes leaves the count unset with
    them): then every condition is on the type, cluster and namespace, and the count
    walks at most ``cap`` entries of the order index from ``after`` on."""
    if cap is not None and target.selective():
        raise ValueError("remainingItemCount is not counted for lists with selectors")
    following = sa.select(sa.literal(1)).where(*conditions(target, scope),
                                               after_condition(order_keys(target.search.order), after))
    if cap is not None:
        following = following.limit(cap)
    return sa.select(sa.func.count()).select_from(following.subquery("following"))


def get_statement(target: Target, scope: Scope, *, limit: int) -> sa.Select[Any]:
    """The objects a GET by name matches: one per cluster that has it."""
    return list_statement(target, scope, limit=limit)


def watch_statement(target: Target | None, scope: Scope, *, after: int, upto: int,
                    limit: int) -> sa.Select[Any]:
    """The next changes after sequence ``after`` up to the horizon ``upto`` (of one type and
    place, or with ``target`` None of everything: the process's shared tail; read the horizon
    first: ``apiserver.horizon``): each with the state the object left
    (``before``) and the state the change made (``after``), as annotated JSON text.

    Selectors are not applied here: a watcher must see an object stop matching (sent as
    DELETED), which needs both states; ``apiserver.watch`` evaluates them."""
    log = change_log
    later = change_log.alias("later")
    following = (sa.select(later.c.object)
                 .where(later.c.cluster == log.c.cluster, later.c.grp == log.c.grp,
                        later.c.resource == log.c.resource, later.c.namespace == log.c.namespace,
                        later.c.name == log.c.name, later.c.seq > log.c.seq)
                 .order_by(later.c.seq).limit(1).scalar_subquery())
    current = (sa.select(resources.c.object)
               .where(resources.c.cluster == log.c.cluster, resources.c.grp == log.c.grp,
                      resources.c.resource == log.c.resource, resources.c.namespace == log.c.namespace,
                      resources.c.name == log.c.name)
               .scalar_subquery())
    after_state = sa.case((log.c.type == "DELETED", log.c.object), else_=sa.func.coalesce(following, current))
    stmt = sa.select(log.c.seq, log.c.type, log.c.cluster, log.c.grp, log.c.version, log.c.resource,
                     log.c.namespace, log.c.name,
                     sa.cast(annotated(log.c.object, log.c.cluster, log.c.seq), sa.Text).label("before"),
                     sa.cast(annotated(after_state, log.c.cluster, log.c.seq), sa.Text).label("after"))
    where = [log.c.seq > after, log.c.seq <= upto]
    if target is not None:
        where += _identity_conditions(target, scope, log)
    return stmt.where(*where).order_by(log.c.seq).limit(limit)


def compiled(stmt: sa.Select[Any]) -> tuple[str, list[Any]]:
    """SQL text with ``$n`` placeholders and its parameters, for asyncpg."""
    result = stmt.compile(dialect=_DIALECT)
    params = result.params
    return result.string, [params[name] for name in result.positiontup or ()]
