"""The reports' statements: a report's filters and the caller's scope in, one parameterized
SQLAlchemy Core statement out (the sibling of ``apiserver.query``, composed the same way:
request values only ever become bound parameters).

Each report reads narrow data, never a scan of the objects (at 1M pods they are about 5 GB):

* ``counts``: ``object_counts``, the counts per (cluster, group, resource, namespace) that
  triggers on ``resources`` keep (migration 12);
* ``pods``: an index-only scan of ``resources_pod_report``, which holds the generated
  columns ``pod_phase``, ``pod_restarts`` and ``pod_images`` of every pod (migration 6);
* ``images``: ``pod_image_use``, the summary per cluster, namespace and image that triggers
  on ``resources`` keep exact (migration 13), read in the report's order from an index that
  holds it. Pods whose images were too long to index (``pod_images`` NULL) are not in the
  summary: their objects are read (found through a partial index that is normally empty)
  and added, only when the request's place has any;
* ``events``: the events whose time (``kube_event_time``) falls in the window, found by
  ``resources_event_time``; only those rows are read;
* ``nodes``: the node rows (found by an index that leads with the type), parsed with ``kube_quantity``:
  nodes are a few per thousand objects;
* ``clusters``: the registry and the per-type sync state (``sync_state``), one row a type.

Cluster-scoped objects have namespace "": a ``namespaces`` filter leaves them out, the way
the caller's scope does. The nodes and clusters reports are about cluster-scoped things and
do not take the filter (as ``kubectl get nodes -n x`` ignores the namespace); a scope that
limits namespaces still hides nodes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from apiserver.scope import Columns, Scope, scope_where
from syncer.schema import clusters, object_counts, pod_image_use, resources, sync_state

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
BIGINT_MAX = 2**63 - 1
_CONSTANT = re.compile(r"^[a-z.{},]*$")
# status.capacity and status.allocatable: (resource, scale to the unit, column suffix)
_NODE_FIGURES = (("cpu", 1000, "CpuMillis"), ("memory", 1, "MemoryBytes"), ("pods", 1, "Pods"))
_NODE_UNITS = (("CpuMillis", "cpu in millicores"), ("MemoryBytes", "memory in bytes"), ("Pods", "pods"))
ColumnType = Literal["string", "integer", "boolean", "number", "date-time"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Filters:
    """What a report request narrows to; None means no restriction on that axis."""

    clusters: frozenset[str] | None = None
    namespaces: frozenset[str] | None = None
    since: datetime | None = None  # inclusive
    before: datetime | None = None  # exclusive


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportColumn:
    name: str
    type: ColumnType
    description: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Report:
    """One report: its columns (the statement's labels, in order) and how it is composed."""

    name: str
    description: str
    columns: tuple[ReportColumn, ...]
    statement: Callable[[Filters, Scope], sa.Select[Any]]
    namespaced: bool = True  # takes ``namespaces=``
    windowed: bool = False  # takes ``since=`` and ``before=``


def _col(name: str, type_: ColumnType, description: str) -> ReportColumn:
    return ReportColumn(name=name, type=type_, description=description)


# -- conditions ---------------------------------------------------------------------------------

def _in(column: ColumnElement[Any], values: Iterable[str]) -> ColumnElement[bool]:
    return column == sa.func.any(sa.literal(sorted(values), sa.ARRAY(sa.Text)))


def _constant(value: str) -> ColumnElement[Any]:
    """One of our own constants (a type's name, a JSON path) as SQL text, not a parameter:
    the planner then proves the partial indexes' conditions even under a generic plan."""
    if not _CONSTANT.match(value):  # never: only this module's literals come here
        raise ValueError(f"unexpected constant {value!r}")
    return sa.literal_column(f"'{value}'")


def _type(group: str, resource: str) -> list[ColumnElement[bool]]:
    c = resources.c
    return [c.grp == _constant(group), c.resource == _constant(resource)]


def _resources(of_type: tuple[str, str], scope: Scope, filters: Filters, *,
               namespaced: bool = True) -> list[ColumnElement[bool]]:
    """Objects of one type in the request's place and the caller's grant."""
    c = resources.c
    granted = scope_where(scope, Columns(c.cluster, c.namespace, c.grp, c.resource), of_type=of_type)
    return [*_type(*of_type), *granted, *_place(filters, namespaced=namespaced)]


def _place(filters: Filters, *, namespaced: bool = True,
           cluster: ColumnElement[Any] = resources.c.cluster,
           namespace: ColumnElement[Any] | None = resources.c.namespace) -> list[ColumnElement[bool]]:
    """The clusters and namespaces the request asks for."""
    where: list[ColumnElement[bool]] = []
    if filters.clusters is not None:
        where.append(_in(cluster, filters.clusters))
    if namespace is not None and namespaced and filters.namespaces is not None:
        where.append(_in(namespace, filters.namespaces))
    return where


def _count(condition: ColumnElement[bool] | None = None) -> ColumnElement[Any]:
    counted = sa.func.count()
    return counted if condition is None else counted.filter(condition)


def _bigint(value: ColumnElement[Any]) -> ColumnElement[Any]:
    """A numeric sum as a bigint, held to +-BIGINT_MAX: an absurd figure from a member cluster
    saturates its sum instead of failing the report."""
    held = sa.func.greatest(sa.func.least(sa.func.coalesce(value, 0), BIGINT_MAX), -BIGINT_MAX)
    return sa.cast(held, sa.BigInteger)


# -- statements ---------------------------------------------------------------------------------

def counts_statement(filters: Filters, scope: Scope) -> sa.Select[Any]:
    """Objects per cluster, type and namespace (``object_counts``, kept by triggers), with
    the type's kind from its sync state."""
    o = object_counts.c
    grouped = (sa.select(o.cluster, o.grp, o.resource, o.namespace, o.objects)
               .where(*_place(filters, cluster=o.cluster, namespace=o.namespace),
                      *scope_where(scope, Columns(o.cluster, o.namespace, o.grp, o.resource)))
               .subquery("grouped"))
    s, g = sync_state.c, grouped.c
    kind = (sa.select(s.kind).where(s.cluster == g.cluster, s.grp == g.grp, s.resource == g.resource)
            .scalar_subquery())
    return (sa.select(g.cluster, g.grp.label("group"), g.resource, sa.func.coalesce(kind, "").label("kind"),
                      g.namespace, g.objects)
            .order_by(g.cluster, g.grp, g.resource, g.namespace))


def pods_statement(filters: Filters, scope: Scope) -> sa.Select[Any]:
    """Pods per cluster by phase, and their containers' restarts."""
    c = resources.c
    phases = [_count(c.pod_phase == p).label(p.lower()) for p in PHASES]
    other = _count(sa.or_(c.pod_phase.is_(None), sa.not_(_in(c.pod_phase, PHASES)))).label("other")
    return (sa.select(c.cluster, _count().label("pods"), *phases, other,
                      _bigint(sa.func.sum(c.pod_restarts)).label("restarts"))
            .where(*_resources(("", "pods"), scope, filters))
            .group_by(c.cluster).order_by(c.cluster))


def images_statement(filters: Filters, scope: Scope) -> sa.Select[Any]:
    """Images per cluster and namespace: the pods that declare each, and their containers.

    Read from ``pod_image_use``, the summary the triggers of migration 13 keep, in the order
    of its ``pod_image_use_report_order`` index: no grouping and no sort (at 1M pods, 130k
    rows; hashing and sorting them cost more than reading them). Pods whose images were too
    long to index are not in the summary: when the request's place has any (normally none),
    a second branch adds them, counted from their objects, and groups the lot instead; the
    check is a one-time filter of each branch, so only one of them runs. Each branch is
    ordered in itself, so that PostgreSQL merges them rather than sorting (it does not pass
    an outer ORDER BY down into the branches of a UNION)."""
    u = pod_image_use.c
    granted = scope_where(scope, Columns(u.cluster, u.namespace, None, None), of_type=("", "pods"))
    summarized = (sa.select(u.image, u.cluster, u.namespace, u.pods, u.containers)
                  .where(*_place(filters, cluster=u.cluster, namespace=u.namespace), *granted))
    c = resources.c
    unbounded = [*_resources(("", "pods"), scope, filters), c.pod_images.is_(None)]
    some = sa.exists(sa.select(sa.literal(1)).where(*unbounded))
    rows = sa.union_all(summarized, _unbounded_images(unbounded)).subquery("rows")
    merged = (sa.select(rows.c.image, rows.c.cluster, rows.c.namespace,
                        _bigint(sa.func.sum(rows.c.pods)).label("pods"),
                        _bigint(sa.func.sum(rows.c.containers)).label("containers"))
              .where(some).group_by(rows.c.image, rows.c.cluster, rows.c.namespace)
              .order_by(rows.c.image, rows.c.cluster, rows.c.namespace))
    alone = summarized.where(sa.not_(some)).order_by(u.image, u.cluster, u.namespace)
    either = sa.union_all(alone, merged).subquery("images")
    return sa.select(*either.c).order_by(either.c.image, either.c.cluster, either.c.namespace)


def _unbounded_images(where: list[ColumnElement[bool]]) -> sa.Select[Any]:
    """What ``pod_image_use`` leaves out, counted the same way from the objects: the pods
    (of ``where``) whose ``pod_images`` is NULL, found by ``resources_pod_images_unbounded``.
    They are grouped by their images first, which also reads each object's images once."""
    c = resources.c
    images = sa.func.kube_pod_images(c.object, None, type_=c.pod_images.type)
    combos = (sa.select(c.cluster, c.namespace, images.label("images"), _count().label("pods"))
              .where(*where).group_by(c.cluster, c.namespace, images).subquery("combos"))
    image = (sa.func.unnest(combos.c.images).table_valued("image", with_ordinality="i")
             .render_derived(name="u").lateral())
    first = sa.or_(image.c.i == 1, combos.c.images[image.c.i - 1] != image.c.image)
    return (sa.select(image.c.image, combos.c.cluster, combos.c.namespace,
                      sa.func.sum(combos.c.pods).filter(first).label("pods"),
                      sa.func.sum(combos.c.pods).label("containers"))
            .select_from(combos.join(image, sa.true()))
            .group_by(combos.c.cluster, combos.c.namespace, image.c.image))


def _node_figure(path: str, *, scale: int = 1) -> ColumnElement[Any]:
    """One node's quantity at ``status.<path>`` in the column's unit, rounded up (as Kubernetes
    rounds milli-values); NULL if missing or not a quantity (the sum leaves it out)."""
    quantity = sa.func.kube_quantity(resources.c.object.op("#>>")(_constant(f"{{status,{path}}}")))
    return sa.func.ceil(quantity * scale)


def nodes_statement(filters: Filters, scope: Scope) -> sa.Select[Any]:
    """Node count, capacity and allocatable (cpu, memory, pods) summed per cluster."""
    c = resources.c
    figures = [_bigint(sa.func.sum(_node_figure(f"{part},{resource}", scale=scale))).label(part + label)
               for part in ("capacity", "allocatable") for resource, scale, label in _NODE_FIGURES]
    return (sa.select(c.cluster, _count().label("nodes"), *figures)
            .where(*_resources(("", "nodes"), scope, filters, namespaced=False))
            .group_by(c.cluster).order_by(c.cluster))


def events_statement(filters: Filters, scope: Scope) -> sa.Select[Any]:
    """Core events last seen in the window, per cluster, type and reason: how many event
    objects, and how many times they happened (their counts)."""
    c = resources.c
    at = sa.func.kube_event_time(c.object)
    where = _resources(("", "events"), scope, filters)
    if filters.since is not None:
        where.append(at >= filters.since)
    if filters.before is not None:
        where.append(at < filters.before)
    type_ = sa.func.coalesce(c.object.op("->>")(_constant("type")), _constant("")).label("type")
    reason = sa.func.coalesce(c.object.op("->>")(_constant("reason")), _constant("")).label("reason")
    return (sa.select(c.cluster, type_, reason, _count().label("events"),
                      _bigint(sa.func.sum(sa.func.kube_event_count(c.object))).label("occurrences"))
            .where(*where).group_by(c.cluster, type_, reason).order_by(c.cluster, type_, reason))


def clusters_statement(filters: Filters, scope: Scope) -> sa.Select[Any]:
    """Registered clusters with their sync state summed over the types the caller may read.
    Staleness is the catalog's (``apiserver.catalog``), added by the handler."""
    k, s = clusters.c, sync_state.c
    # A type's figures are per cluster, not per namespace: only rules over whole namespaces
    # may show them; a rule limited to some namespaces still lists the cluster.
    counted = scope_where(scope.whole_namespaces(), Columns(s.cluster, None, s.grp, s.resource))
    joined = clusters.outerjoin(sync_state, sa.and_(s.cluster == k.name, *counted))
    return (sa.select(k.name.label("cluster"), k.mode, k.healthy,
                      sa.func.count(s.resource).label("types"),
                      _bigint(sa.func.sum(s.object_count)).label("objects"),
                      sa.func.count(s.resource).filter(s.phase == "listing").label("listingTypes"),
                      sa.func.count(s.resource).filter(sa.or_(s.phase == "error", s.last_error.is_not(None)))
                      .label("errorTypes"),
                      _bigint(sa.func.sum(s.skipped)).label("skipped"),
                      sa.func.max(s.last_event_at).label("lastEventAt"),
                      k.last_seen_at.label("lastSeenAt"), k.last_error.label("lastError"))
            .select_from(joined)
            .where(k.removing_at.is_(None),
                   *_place(filters, namespaced=False, cluster=k.name, namespace=None),
                   *_listed_clusters(scope, k.name))
            .group_by(k.name).order_by(k.name))


def _listed_clusters(scope: Scope, name: ColumnElement[Any]) -> list[ColumnElement[bool]]:
    """The clusters some rule of the grant names (whatever its namespaces and types)."""
    allowed = scope.clusters()
    if not scope.rules:
        return [sa.false()]
    return [] if allowed is None else [_in(name, allowed)]


# -- the reports ---------------------------------------------------------------------------------

_CLUSTER = _col("cluster", "string", "member cluster")
_NAMESPACE = _col("namespace", "string", "namespace (\"\" for cluster-scoped objects)")

REPORTS: dict[str, Report] = {r.name: r for r in (
    Report(name="counts", description="objects per cluster, type and namespace", statement=counts_statement,
           columns=(_CLUSTER, _col("group", "string", "API group (\"\" for the core group)"),
                    _col("resource", "string", "resource (plural)"), _col("kind", "string", "kind"),
                    _NAMESPACE, _col("objects", "integer", "objects"))),
    Report(name="pods", description="pods per cluster by phase, and their containers' restarts",
           statement=pods_statement,
           columns=(_CLUSTER, _col("pods", "integer", "pods"),
                    *(_col(p.lower(), "integer", f"pods in phase {p}") for p in PHASES),
                    _col("other", "integer", "pods without a phase or with one Kubernetes does not define"),
                    _col("restarts", "integer", "restarts of their containers and init containers"))),
    Report(name="images", description="container images in use per cluster and namespace",
           statement=images_statement,
           columns=(_col("image", "string", "image as the pod spec names it"), _CLUSTER, _NAMESPACE,
                    _col("pods", "integer", "pods with a container (init, ephemeral too) of the image"),
                    _col("containers", "integer", "containers of those pods with the image"))),
    Report(name="nodes", description="nodes per cluster with capacity and allocatable summed",
           statement=nodes_statement, namespaced=False,
           columns=(_CLUSTER, _col("nodes", "integer", "nodes"),
                    *(_col(f"{part}{label}", "integer", f"{part} {what}, summed over nodes")
                      for part in ("capacity", "allocatable")
                      for label, what in _NODE_UNITS))),
    Report(name="events", description="core events per cluster, type and reason, last seen in a window",
           statement=events_statement, windowed=True,
           columns=(_CLUSTER, _col("type", "string", "Normal or Warning"), _col("reason", "string", "reason"),
                    _col("events", "integer", "event objects last seen in the window"),
                    _col("occurrences", "integer", "times they happened (each event's count)"))),
    Report(name="clusters", description="member clusters with sync health and staleness",
           statement=clusters_statement, namespaced=False,
           columns=(_CLUSTER, _col("mode", "string", "push or pull"),
                    _col("healthy", "boolean", "the syncer's last word on the cluster (null: none yet)"),
                    _col("stale", "boolean", "its data is stale (silent agent, unreachable cluster)"),
                    _col("dataAgeSeconds", "number", "since the syncer last heard from it"),
                    _col("message", "string", "why it is stale"),
                    _col("types", "integer", "types synced"), _col("objects", "integer", "objects stored"),
                    _col("listingTypes", "integer", "types being listed (not yet watching)"),
                    _col("errorTypes", "integer", "types with an error"),
                    _col("skipped", "integer", "objects skipped since their type's last list"),
                    _col("lastEventAt", "date-time", "last change received"),
                    _col("lastSeenAt", "date-time", "last word from the cluster or its agent"),
                    _col("lastError", "string", "the cluster's last error that belongs to no type"))),
)}
