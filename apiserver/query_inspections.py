"""The inspections' checks, as data: each a name, a severity, a description of what it flags
(thresholds included) and a statement builder taking the caller's scope. Adding a check is
one entry in ``CHECKS``.

Every statement answers the same columns, one row per finding: ``cluster``, ``grp``,
``version``, ``resource``, ``namespace``, ``name`` (unique together within a check) and
``message``. Checks read the store only, never a member cluster, and each reads what it
flags, not what is stored (plans checked at 1M objects, see the module of each index):

* pods crash-looping, deployments unavailable, nodes not ready or under pressure, Services
  whose Endpoints have no ready address: a partial index each (migration 19), holding only
  the rows the check flags, named here by the same predicate text;
* pods and PVCs pending: the ``status.phase`` field index (migration 4), then the time;
* objects terminating: a partial index on ``deleted_at``;
* containers: the templates of workloads (deployments, statefulsets, daemonsets, cronjobs,
  and replicasets and jobs no controller owns), read by type (a few objects per hundred
  pods), and pods no controller owns (a partial index): a Deployment's hundred pods are one
  finding, on the Deployment;
* clusters: the registry and the sync state.

Request values never come here: the only text is this module's constants and those of
``syncer.migrations_inspections``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from apiserver.scope import Columns, Scope, one_of
from apiserver.scope import scope_where as scope_rules_where
from syncer import migrations_inspections as predicate
from syncer.schema import (
    clusters,
    inspection_counts,
    inspection_findings,
    inspection_runs,
    resources,
    sync_state,
)

Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "info")  # most severe first
PENDING_S = 300  # a pod or PVC pending longer than this
TERMINATING_S = 600  # an object terminating longer than this
STALE_S = 300  # a push cluster silent this long is stale (as apiserver.catalog says)
MESSAGE_MAX = 500
COLUMNS = ("cluster", "grp", "version", "resource", "namespace", "name", "message")
_CONSTANT = re.compile(r"^[a-zA-Z0-9_ .,:;{}()\[\]$@*?&|!=<>\"^/+-]*$")


@dataclass(frozen=True, kw_only=True, slots=True)
class Check:
    """One check: what it flags and how it finds it."""

    name: str
    severity: Severity
    description: str
    statement: Callable[[Scope], sa.Select[Any]]


# -- pieces -------------------------------------------------------------------------------------


def _constant(value: str) -> ColumnElement[Any]:
    """One of our own constants as SQL text (not a parameter), so that the planner proves the
    partial indexes' predicates; a quote in it would end the literal, so none may be."""
    if not _CONSTANT.match(value):  # never: only this module's literals come here
        raise ValueError(f"unexpected constant {value!r}")
    return sa.literal_column(f"'{value}'")


def _jsonpath(path: str) -> ColumnElement[Any]:
    return sa.literal_column(f"{_constant(path)}::jsonpath")


def _field(obj: ColumnElement[Any], *path: str) -> ColumnElement[Any]:
    """``obj #>> '{a,b}'``: a field as text, NULL if absent."""
    return obj.op("#>>")(_constant("{" + ",".join(path) + "}"))


def _first(obj: ColumnElement[Any], path: str) -> ColumnElement[Any]:
    """The first match of a jsonpath, as text (NULL for none)."""
    return sa.func.jsonb_path_query_first(obj, _jsonpath(path)).op("#>>")(_constant("{}"))


def _listed(obj: ColumnElement[Any], path: str) -> ColumnElement[Any]:
    """Every match of a jsonpath, as ``a, b`` (names and images: no quotes or brackets in them
    that matter to a reader)."""
    array = sa.cast(sa.func.jsonb_path_query_array(obj, _jsonpath(path)), sa.Text)
    return sa.func.translate(array, _constant('[]"'), _constant(""))


def _cat(left: ColumnElement[Any], right: ColumnElement[Any]) -> ColumnElement[Any]:
    """``left || right``: NULL when either is (so that ``coalesce`` drops a missing part)."""
    return left.op("||")(right)


def _matches(obj: ColumnElement[Any], path: str) -> ColumnElement[bool]:
    return obj.op("@?", is_comparison=True)(_jsonpath(path))


def _where(text: str) -> ColumnElement[bool]:
    # A predicate of migration 19; its colons (":latest") are text, not bind parameters.
    return sa.text("(" + text.replace(":", "\\:") + ")")  # type: ignore[return-value]


def _age(since: ColumnElement[Any]) -> ColumnElement[Any]:
    """``now() - since`` as 12m, 5h or 3d."""
    secs = sa.extract("epoch", sa.func.now() - since)

    def unit(size: int, suffix: str) -> ColumnElement[Any]:
        return _cat(sa.cast(sa.func.floor(secs / size), sa.BigInteger), _constant(suffix))

    return sa.case((secs < 7200, unit(60, "m")), (secs < 172800, unit(3600, "h")), else_=unit(86400, "d"))


def _message(*parts: ColumnElement[Any]) -> ColumnElement[Any]:
    text = sa.func.concat(*parts)
    return sa.func.left(text, MESSAGE_MAX).label("message")


def _is_type(group: str, resource: str, table: sa.FromClause = resources) -> list[ColumnElement[bool]]:
    return [table.c.grp == _constant(group), table.c.resource == _constant(resource)]


def scope_where(
    scope: Scope,
    *,
    cluster: ColumnElement[Any],
    namespace: ColumnElement[Any] | None = None,
    group: ColumnElement[Any] | None = None,
    resource: ColumnElement[Any] | None = None,
) -> list[ColumnElement[bool]]:
    """The caller's scope on a relation's identity columns, every name a bound parameter
    (``apiserver.scope``). With the cluster alone (a finding about a cluster), the clusters
    some rule lets the caller read anything in."""
    if namespace is None and group is None and resource is None:
        clusters = scope.clusters()
        if not scope.rules:
            return [sa.false()]
        return [] if clusters is None else [one_of(cluster, clusters)]
    return scope_rules_where(scope, Columns(cluster, namespace, group, resource))


def _in_scope(scope: Scope, table: sa.FromClause = resources) -> list[ColumnElement[bool]]:
    c = table.c
    return scope_where(scope, cluster=c.cluster, namespace=c.namespace, group=c.grp, resource=c.resource)


def _finding(message: ColumnElement[Any], table: sa.FromClause = resources) -> sa.Select[Any]:
    c = table.c
    return sa.select(c.cluster, c.grp, c.version, c.resource, c.namespace, c.name, message)


# -- pods, deployments, nodes --------------------------------------------------------------------


def crash_looping(scope: Scope) -> sa.Select[Any]:
    c = resources.c
    container = _first(c.object, '$.status.*[*] ? (@.state.waiting.reason == "CrashLoopBackOff").name')
    last = sa.case(
        (
            container.is_not(None),
            sa.func.concat(_constant(", container "), container, _constant(" waiting in CrashLoopBackOff")),
        ),
        else_=_constant(""),
    )
    message = _message(
        _constant("restarted "), sa.func.coalesce(c.pod_restarts, 0), _constant(" times"), last
    )
    return _finding(message).where(_where(predicate.CRASH_LOOPING), *_in_scope(scope))


def _pending(group: str, resource: str, scope: Scope, *details: ColumnElement[Any]) -> sa.Select[Any]:
    c = resources.c
    phase = _field(c.object, "status", "phase")
    message = _message(_constant("Pending for "), _age(c.created_at), *details)
    return _finding(message).where(
        *_is_type(group, resource),
        phase == _constant("Pending"),
        c.created_at < sa.func.now() - sa.text(f"interval '{PENDING_S} seconds'"),
        *_in_scope(scope),
    )


def pending_pods(scope: Scope) -> sa.Select[Any]:
    obj = resources.c.object
    unscheduled = '$.status.conditions[*] ? (@.type == "PodScheduled" && @.status == "False")'
    reason = sa.func.coalesce(
        _first(obj, unscheduled + ".reason"), _first(obj, "$.status.*[*].state.waiting.reason")
    )
    detail = sa.func.coalesce(
        _first(obj, unscheduled + ".message"), _first(obj, "$.status.*[*].state.waiting.message")
    )
    return _pending(
        "",
        "pods",
        scope,
        sa.func.coalesce(_cat(_constant(": "), reason), _constant("")),
        sa.func.coalesce(_cat(_constant(": "), detail), _constant("")),
    )


def pending_claims(scope: Scope) -> sa.Select[Any]:
    obj = resources.c.object
    storage = _field(obj, "spec", "storageClassName")
    return _pending(
        "",
        "persistentvolumeclaims",
        scope,
        sa.func.coalesce(_cat(_constant(", storage class "), storage), _constant("")),
    )


def unavailable_deployments(scope: Scope) -> sa.Select[Any]:
    obj = resources.c.object
    message = _message(
        sa.func.coalesce(_field(obj, "status", "availableReplicas"), _constant("0")),
        _constant(" of "),
        sa.func.coalesce(_field(obj, "spec", "replicas"), _constant("1")),
        _constant(" replicas available"),
        sa.func.coalesce(
            _cat(
                _cat(_constant(", "), _field(obj, "status", "unavailableReplicas")), _constant(" unavailable")
            ),
            _constant(""),
        ),
    )
    return _finding(message).where(_where(predicate.UNAVAILABLE), *_in_scope(scope))


def nodes_not_ready(scope: Scope) -> sa.Select[Any]:
    obj = resources.c.object
    ready = predicate.NOT_READY_PATH
    message = _message(
        _constant("Ready is "),
        _first(obj, ready + ".status"),
        sa.func.coalesce(_cat(_constant(": "), _first(obj, ready + ".reason")), _constant("")),
        sa.func.coalesce(_cat(_constant(": "), _first(obj, ready + ".message")), _constant("")),
    )
    return _finding(message).where(_where(predicate.NOT_READY), *_in_scope(scope))


def nodes_under_pressure(scope: Scope) -> sa.Select[Any]:
    message = _message(_constant("under "), _listed(resources.c.object, predicate.PRESSURE_PATH + ".type"))
    return _finding(message).where(_where(predicate.UNDER_PRESSURE), *_in_scope(scope))


# -- containers ----------------------------------------------------------------------------------


def _containers(scope: Scope, path: str, message: Callable[[str], ColumnElement[Any]]) -> sa.Select[Any]:
    """The union over the types with a pod spec of those whose containers ``path`` (a jsonpath
    with its ``{spec}``) matches, each through its arm of the check's index, with
    ``message(spec)``."""
    parts = [
        _finding(message(entry[2])).where(_where(predicate.container_arm(path, *entry)), *_in_scope(scope))
        for entry in predicate.POD_SPECS
    ]
    union = sa.union_all(*parts).subquery("containers")
    return sa.select(*(union.c[name] for name in COLUMNS))


_NO_LIMITS = "[*] ? (!exists(@.resources.limits.*))"
_NO_REQUESTS = "[*] ? (!exists(@.resources.requests.*))"


def without_resources(scope: Scope) -> sa.Select[Any]:
    obj = resources.c.object

    def message(spec: str) -> ColumnElement[Any]:
        parts = [
            sa.case((names != _constant(""), _cat(_constant(f"without {what}: "), names)))
            for what, names in (
                ("limits", _listed(obj, f"{spec}.containers{_NO_LIMITS}.name")),
                ("requests", _listed(obj, f"{spec}.containers{_NO_REQUESTS}.name")),
            )
        ]
        return _message(sa.func.concat_ws(_constant("; "), *parts))

    return _containers(scope, predicate.NO_RESOURCES_PATH, message)


def latest_images(scope: Scope) -> sa.Select[Any]:
    def message(spec: str) -> ColumnElement[Any]:
        matched = predicate.LATEST_PATH.format(spec=spec)
        return _message(_constant("image on latest: "), _listed(resources.c.object, matched))

    return _containers(scope, predicate.LATEST_PATH, message)


# -- services, terminating objects, clusters ------------------------------------------------------


def services_without_endpoints(scope: Scope) -> sa.Select[Any]:
    """Services with a selector whose Endpoints (same cluster, namespace and name) list no
    ready address. A Service without an Endpoints object is not flagged: the endpoints type
    may not be synced, and the endpoints controller makes one for every Service it serves."""
    c = resources.c
    empty = (
        sa.select(c.cluster, c.namespace, c.name, c.object)
        .where(_where(predicate.NO_ADDRESSES))
        .subquery("endpoints")
    )
    svc = resources.alias("svc")
    not_ready = sa.func.jsonb_array_length(
        sa.func.jsonb_path_query_array(empty.c.object, _jsonpath("$.subsets[*].notReadyAddresses[*]"))
    )
    message = _message(
        _constant("no ready endpoint for selector "),
        sa.func.translate(
            sa.cast(svc.c.object.op("->")(_constant("spec")).op("->")(_constant("selector")), sa.Text),
            _constant('{}" '),
            _constant(""),
        ),
        sa.case(
            (not_ready > 0, sa.func.concat(_constant(" ("), not_ready, _constant(" not ready)"))),
            else_=_constant(""),
        ),
    )
    return (
        _finding(message, svc)
        .select_from(
            empty.join(
                svc,
                sa.and_(
                    svc.c.cluster == empty.c.cluster,
                    *_is_type("", "services", svc),
                    svc.c.namespace == empty.c.namespace,
                    svc.c.name == empty.c.name,
                ),
            )
        )
        .where(
            _matches(svc.c.object, "$.spec.selector.*"),
            sa.func.coalesce(_field(svc.c.object, "spec", "type"), _constant(""))
            != _constant("ExternalName"),
            *_in_scope(scope, svc),
        )
    )


def terminating(scope: Scope) -> sa.Select[Any]:
    c = resources.c
    finalizers = _listed(c.object, "$.metadata.finalizers[*]")
    message = _message(
        _constant("terminating for "),
        _age(c.deleted_at),
        sa.case(
            (finalizers != _constant(""), _cat(_constant(", finalizers: "), finalizers)), else_=_constant("")
        ),
    )
    return _finding(message).where(
        _where(predicate.TERMINATING),
        c.deleted_at < sa.func.now() - sa.text(f"interval '{TERMINATING_S} seconds'"),
        *_in_scope(scope),
    )


def stale_clusters(scope: Scope) -> sa.Select[Any]:
    """Clusters whose data is stale as the catalog says (unhealthy, or a push cluster's agent
    silent), or with a type whose sync is in error."""
    k, s = clusters.c, sync_state.c
    silent = sa.and_(
        k.mode == _constant("push"), k.last_seen_at < sa.func.now() - sa.text(f"interval '{STALE_S} seconds'")
    )
    errors = (
        sa.select(
            sa.func.string_agg(
                sa.case(
                    (s.grp == _constant(""), s.resource), else_=_cat(_cat(s.resource, _constant(".")), s.grp)
                ),
                _constant(", "),
            )
        )
        .where(s.cluster == k.name, s.phase == _constant("error"))
        .scalar_subquery()
    )
    why = sa.case(
        (k.healthy.is_(False), sa.func.concat(_constant("unhealthy: "), k.health_message)),
        (silent, sa.func.concat(_constant("no word from the agent for "), _age(k.last_seen_at))),
        else_=sa.null(),
    )
    message = _message(sa.func.concat_ws(_constant("; "), why, _cat(_constant("types in error: "), errors)))
    empty = _constant("")
    return sa.select(
        k.name.label("cluster"),
        empty.label("grp"),
        empty.label("version"),
        empty.label("resource"),
        empty.label("namespace"),
        empty.label("name"),
        message,
    ).where(
        k.removing_at.is_(None),
        sa.or_(k.healthy.is_(False), silent, errors.is_not(None)),
        *scope_where(scope, cluster=k.name),
    )


CHECKS: dict[str, Check] = {
    c.name: c
    for c in (
        Check(
            name="pod-crash-looping",
            severity="critical",
            statement=crash_looping,
            description="pods with a container waiting in CrashLoopBackOff, or restarted"
            f" {predicate.CRASH_RESTARTS} times or more",
        ),
        Check(
            name="pod-pending",
            severity="warning",
            statement=pending_pods,
            description=f"pods in phase Pending, created over {PENDING_S // 60} minutes ago",
        ),
        Check(
            name="deployment-unavailable",
            severity="warning",
            statement=unavailable_deployments,
            description="deployments with unavailable replicas (fewer available than spec.replicas)",
        ),
        Check(
            name="node-not-ready",
            severity="critical",
            statement=nodes_not_ready,
            description="nodes whose Ready condition is not True",
        ),
        Check(
            name="node-pressure",
            severity="warning",
            statement=nodes_under_pressure,
            description="nodes with MemoryPressure, DiskPressure, PIDPressure or NetworkUnavailable True",
        ),
        Check(
            name="container-without-resources",
            severity="info",
            statement=without_resources,
            description="workloads (their pod template) and pods without a controller with a container"
            " lacking resource requests or limits",
        ),
        Check(
            name="container-latest-image",
            severity="warning",
            statement=latest_images,
            description="workloads (their pod template) and pods without a controller with a container on"
            " an image tagged :latest or not tagged (an image pinned by digest is fine)",
        ),
        Check(
            name="pvc-pending",
            severity="warning",
            statement=pending_claims,
            description=f"persistent volume claims in phase Pending, created over {PENDING_S // 60}"
            " minutes ago",
        ),
        Check(
            name="service-without-endpoints",
            severity="warning",
            statement=services_without_endpoints,
            description="services with a selector whose Endpoints list no ready address",
        ),
        Check(
            name="object-terminating",
            severity="warning",
            statement=terminating,
            description="objects of any type terminating (deletionTimestamp set) for over"
            f" {TERMINATING_S // 60} minutes: a finalizer that does not finish",
        ),
        Check(
            name="cluster-stale",
            severity="critical",
            statement=stale_clusters,
            description=f"clusters whose data is stale: unhealthy, a push agent silent over {STALE_S // 60}"
            " minutes, or a type whose sync is in error",
        ),
    )
}


# -- reading stored runs ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class FindingFilters:
    """What a reader narrows a stored run to; None means no restriction on that axis."""

    clusters: frozenset[str] | None = None
    namespaces: frozenset[str] | None = None
    checks: frozenset[str] | None = None
    severities: frozenset[str] | None = None


def _one_of(column: ColumnElement[Any], values: frozenset[str]) -> ColumnElement[bool]:
    return column == sa.func.any(sa.literal(sorted(values), sa.ARRAY(sa.Text)))


def visible(scope: Scope, filters: FindingFilters, table: sa.FromClause) -> list[ColumnElement[bool]]:
    """The stored findings (or counts) a reader may see and asks for. A finding about a
    cluster (``resource`` "") is seen by whoever may read that cluster; one about an object
    by whoever may read the object. A ``namespaces`` filter leaves the clusters' out, as it
    leaves out cluster-scoped objects."""
    c = table.c
    where: list[ColumnElement[bool]] = []
    for column, chosen in (
        (c.cluster, filters.clusters),
        (c.namespace, filters.namespaces),
        (c.check_name, filters.checks),
        (c.severity, filters.severities),
    ):
        if chosen is not None:
            where.append(_one_of(column, chosen))
    about_cluster = scope_where(scope, cluster=c.cluster)
    about_object = scope_where(
        scope, cluster=c.cluster, namespace=c.namespace, group=c.grp, resource=c.resource
    )
    if about_object:
        where.append(
            sa.or_(
                sa.and_(c.resource == "", *about_cluster) if about_cluster else c.resource == "",
                sa.and_(c.resource != "", *about_object),
            )
        )
    return where


_RANK = sa.case(
    *((inspection_findings.c.severity == s, i) for i, s in enumerate(SEVERITIES)), else_=len(SEVERITIES)
)


def findings_statement(run_id: int, filters: FindingFilters, scope: Scope) -> sa.Select[Any]:
    """A stored run's findings, most severe first, then by check and place."""
    f = inspection_findings.c
    return (
        sa.select(
            f.check_name, f.severity, f.cluster, f.grp, f.version, f.resource, f.namespace, f.name, f.message
        )
        .where(f.run_id == run_id, *visible(scope, filters, inspection_findings))
        .order_by(_RANK, f.check_name, f.cluster, f.namespace, f.grp, f.resource, f.name)
    )


def counts_statement(
    run_ids: sa.Select[Any] | list[int], filters: FindingFilters, scope: Scope
) -> sa.Select[Any]:
    """Findings per run, check and severity (every finding, kept or not) that the reader sees."""
    n = inspection_counts.c
    runs = (
        n.run_id.in_(run_ids)
        if isinstance(run_ids, sa.Select)
        else n.run_id == sa.func.any(sa.literal(run_ids, sa.ARRAY(sa.BigInteger)))
    )
    return (
        sa.select(
            n.run_id,
            n.check_name,
            n.severity,
            sa.cast(sa.func.sum(n.findings), sa.BigInteger).label("findings"),
        )
        .where(runs, *visible(scope, filters, inspection_counts))
        .group_by(n.run_id, n.check_name, n.severity)
    )


def runs_statement(*, since: datetime | None, before: datetime | None, limit: int) -> sa.Select[Any]:
    """Finished runs started in [since, before), newest first."""
    r = inspection_runs.c
    where: list[ColumnElement[bool]] = [r.finished_at.is_not(None)]
    if since is not None:
        where.append(r.started_at >= since)
    if before is not None:
        where.append(r.started_at < before)
    return (
        sa.select(r.id, r.trigger, r.started_at, r.finished_at, r.findings_kept)
        .where(*where)
        .order_by(r.id.desc())
        .limit(limit)
    )


def run_statement(run_id: int | None) -> sa.Select[Any]:
    """One finished run, or (None) the latest."""
    r = inspection_runs.c
    chosen = (
        r.finished_at.is_not(None) if run_id is None else sa.and_(r.id == run_id, r.finished_at.is_not(None))
    )
    return (
        sa.select(r.id, r.trigger, r.started_at, r.finished_at, r.findings_kept)
        .where(chosen)
        .order_by(r.id.desc())
        .limit(1)
    )
