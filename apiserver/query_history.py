"""History and as-of queries, composed like every read query (``apiserver.query``, whose
sibling this is): a parsed request and the caller's ``Scope`` in, parameterized SQL out.

All of them read the change log, which keeps the state an object *leaves* (docs/design.md,
"The change log keeps before-images"):

- an object's history: its changes in sequence order, each with the state it left and the
  state it made (the next change's before-image, or the current row);
- the changes of a namespace, of clusters or of types in a time window, in sequence order;
- a list as it was at sequence S: an object existed at S in state X iff its first change
  after S is a MODIFIED or DELETED whose before-image is X, or it has no change after S and
  is a current row (then ``resources.seq``, its last change, is at most S; X is the row).
  If its first change after S is an ADDED, it did not exist at S.

Times become sequences through ``change_log_at``: a change's time is read when its numbers
are drawn (migration 18), so times follow sequence order, but for writers that draw
within the same moment (docs/design.md, "History"). The
index each query relies on is named at the query; ``tests/apiserver/test_history_plans.py``
checks the plans at a realistic size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.sql.elements import ColumnElement

from apiserver.query import (
    ORDER_COLUMNS,
    Scope,
    Target,
    annotated,
    conditions,
    narrowing_conditions,
    one_of,
    scope_conditions,
    selector_conditions,
    types_condition,
)
from syncer.schema import change_log, resources

CHANGE_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED"})
_EMPTY_OBJECT = sa.text("'{}'::jsonb")


@dataclass(frozen=True, kw_only=True, slots=True)
class ObjectKey:
    """One object by name: its history spans every version it was stored in, and (with
    ``cluster`` None) every cluster that has had an object of that name."""

    group: str
    resource: str
    namespace: str
    name: str
    cluster: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ChangeFilter:
    """Which changes a window holds; None means no restriction on that axis."""

    clusters: frozenset[str] | None = None
    namespace: str | None = None
    types: frozenset[tuple[str, str]] | None = None  # (group, resource)
    change_types: frozenset[str] | None = None
    since: datetime | None = None  # inclusive
    before: datetime | None = None  # exclusive


# -- conditions ---------------------------------------------------------------------------------

def _same_object(a: sa.FromClause, b: sa.FromClause) -> list[ColumnElement[bool]]:
    return [a.c.cluster == b.c.cluster, a.c.grp == b.c.grp, a.c.resource == b.c.resource,
            a.c.namespace == b.c.namespace, a.c.name == b.c.name]


def state_after(log: sa.FromClause) -> ColumnElement[Any]:
    """The state a change made: the next change's before-image (``change_log_list_order``), or the
    current row (the primary key); NULL for a deletion. As ``watch_statement`` reads it."""
    later = change_log.alias("later")
    following = (sa.select(later.c.object).where(*_same_object(later, log), later.c.seq > log.c.seq)
                 .order_by(later.c.seq).limit(1).scalar_subquery())
    current = sa.select(resources.c.object).where(*_same_object(resources, log)).scalar_subquery()
    return sa.case((log.c.type == "DELETED", sa.null()), else_=sa.func.coalesce(following, current))


# -- times to sequences -------------------------------------------------------------------------

def _last_at_or_before(moment: datetime) -> ColumnElement[Any]:
    log = change_log
    return (sa.select(log.c.seq).where(log.c.at <= moment).order_by(log.c.at.desc(), log.c.seq.desc())
            .limit(1).scalar_subquery())


def _last_before(moment: datetime) -> ColumnElement[Any]:
    log = change_log
    return (sa.select(log.c.seq).where(log.c.at < moment).order_by(log.c.at.desc(), log.c.seq.desc())
            .limit(1).scalar_subquery())


def _first_at_or_after(moment: datetime) -> ColumnElement[Any]:
    log = change_log
    return (sa.select(log.c.seq).where(log.c.at >= moment).order_by(log.c.at, log.c.seq)
            .limit(1).scalar_subquery())


def _floor() -> ColumnElement[Any]:
    return sa.select(sa.func.min(change_log.c.seq)).scalar_subquery()


def as_of_point(moment: datetime | None) -> sa.Select[Any]:
    """``seq``: the last sequence at or before ``moment`` (NULL when no retained change is
    that old); ``floor``: the oldest retained sequence (NULL: the log is empty); ``now``:
    the server's clock, which says what "the future" is."""
    seq = _last_at_or_before(moment) if moment is not None else sa.null()
    return sa.select(seq.label("seq"), _floor().label("floor"), sa.func.now().label("now"))


def window_point(*, since: datetime | None, before: datetime | None) -> sa.Select[Any]:
    """A time window as sequences: ``lo`` the first change at or after ``since``, ``hi`` the
    last before ``before`` (NULL: no such change). The caller bounds ``hi`` by the horizon."""
    lo = _first_at_or_after(since) if since is not None else sa.null()
    hi = _last_before(before) if before is not None else sa.null()
    return sa.select(lo.label("lo"), hi.label("hi"), sa.func.now().label("now"))


# -- statements ---------------------------------------------------------------------------------

_ENTRY_COLUMNS = ("seq", "at", "type", "cluster", "grp", "version", "resource", "kind", "namespace", "name",
                  "uid", "resource_version")


def object_history_statement(key: ObjectKey, scope: Scope, *, upto: int, after: int | None,
                             limit: int) -> sa.Select[Any]:
    """An object's changes up to sequence ``upto``, after ``after``, oldest first, each with
    the state it left (``before``) and the state it made (``after``) as JSON text.
    Served by ``change_log_list_order`` (grp, resource, namespace, name, cluster, seq)."""
    log = change_log
    where = [log.c.grp == key.group, log.c.resource == key.resource, log.c.namespace == key.namespace,
             log.c.name == key.name, log.c.seq <= upto,
             *scope_conditions(scope, log, of_type=(key.group, key.resource))]
    if key.cluster is not None:
        where.append(log.c.cluster == key.cluster)
    if after is not None:
        where.append(log.c.seq > after)
    return (sa.select(*(log.c[name] for name in _ENTRY_COLUMNS),
                      sa.cast(log.c.object, sa.Text).label("before"),
                      sa.cast(state_after(log), sa.Text).label("after"))
            .where(*where).order_by(log.c.seq).limit(limit))


def changes_statement(wanted: ChangeFilter, scope: Scope, *, lo: int | None, hi: int, after: int | None,
                      limit: int) -> sa.Select[Any]:
    """The changes of a window, oldest first: sequences ``lo`` .. ``hi`` (the window's times
    as sequences, so that an index on seq bounds the scan), after ``after``. Served by
    ``change_log_namespace`` (namespace, seq), the primary key (cluster, seq),
    ``change_log_type_seq`` (grp, resource, seq) or ``change_log_seq``."""
    log = change_log
    where = [log.c.seq <= hi, *scope_conditions(scope, log)]
    if lo is not None:
        where.append(log.c.seq >= lo)
    if after is not None:
        where.append(log.c.seq > after)
    # The times too: rows written before migration 5 have times out of sequence order.
    if wanted.since is not None:
        where.append(log.c.at >= wanted.since)
    if wanted.before is not None:
        where.append(log.c.at < wanted.before)
    if wanted.namespace is not None:
        where.append(log.c.namespace == wanted.namespace)
    if wanted.clusters is not None:
        where.append(one_of(log.c.cluster, wanted.clusters))
    if wanted.types is not None:
        where.append(types_condition(log, wanted.types))
    if wanted.change_types is not None:
        where.append(one_of(log.c.type, wanted.change_types))
    return sa.select(*(log.c[name] for name in _ENTRY_COLUMNS)).where(*where).order_by(log.c.seq).limit(limit)


def _after_key(columns: Sequence[ColumnElement[Any]], after: Sequence[str]) -> ColumnElement[bool]:
    return sa.tuple_(*columns) > sa.tuple_(*(sa.literal(v, sa.Text) for v in after))


def _first_changes_after(target: Target, scope: Scope, *, seq: int,
                         after: Sequence[str] | None) -> sa.Subquery:
    """Each object's first change after ``seq`` (of the target's type and place): the
    change whose before-image is the object's state at ``seq``, as the object's identity
    and that change's sequence, in list order: read in that order from ``change_log_list_order``
    (grp, resource, namespace, name, cluster, seq), so that a page stops after its rows;
    narrow rows, so that what is read carries no objects."""
    log = change_log
    c = log.c
    where = [c.grp == target.group, c.resource == target.resource, c.seq > seq,
             *scope_conditions(scope, log, of_type=(target.group, target.resource))]
    where += narrowing_conditions(target, log)
    if after is not None:
        where.append(_after_key((c.namespace, c.name, c.cluster), after))
    return (sa.select(c.namespace, c.name, c.cluster, c.seq)
            .where(*where).ext(distinct_on(c.namespace, c.name, c.cluster))
            .order_by(c.namespace, c.name, c.cluster, c.seq).subquery("first_changes"))


def as_of_statement(target: Target, scope: Scope, *, seq: int, limit: int | None,
                    after: Sequence[str] | None = None) -> sa.Select[Any]:
    """A page of a list as it was at sequence ``seq``, in the lists' keyset order
    (namespace, name, cluster): the current rows no change since has touched (served by
    ``resources_list_order``, like every list), merged with the before-images of the first
    changes after ``seq``. Objects are annotated JSON text, as in lists."""
    live = (sa.select(*ORDER_COLUMNS, sa.cast(annotated(resources.c.object, resources.c.cluster),
                                              sa.Text).label("json"))
            .where(*conditions(target, scope), resources.c.seq <= seq))
    if after is not None:
        live = live.where(_after_key(ORDER_COLUMNS, after))
    first = _first_changes_after(target, scope, seq=seq, after=after)
    # Each first change's object, read by sequence only for the rows a page takes: the
    # keys come in list order, so a limited page stops after its rows.
    entry = change_log.alias("entry")
    labels = sa.func.coalesce(entry.c.object[("metadata", "labels")], _EMPTY_OBJECT)
    group_version = f"{target.group}/{target.version}" if target.group else target.version
    # The version the state was stored in is the one it names: a change of stored version
    # is logged under the new one, with the old state as its before-image.
    named = entry.c.object["apiVersion"].astext == group_version
    stored_in = sa.case((entry.c.object.has_key("apiVersion"), named),
                        else_=entry.c.version == target.version)
    # No before-image, no state at ``seq``: an ADDED has none (the object did not exist
    # then), nor has an entry written before the log kept before-images (its state then is
    # not known, and is left out rather than listed as null).
    left = (sa.select(first.c.namespace, first.c.name, first.c.cluster,
                      sa.cast(annotated(entry.c.object, first.c.cluster), sa.Text).label("json"))
            .select_from(first.join(entry, entry.c.seq == first.c.seq))
            .where(entry.c.object.isnot(None), stored_in,
                   *selector_conditions(target, table=entry, labels=labels)))
    if target.namespace is not None:
        # Said here too, the page's order (namespace, name, cluster) is the subquery's (name,
        # cluster, seq) for PostgreSQL, which then streams it instead of sorting every change.
        left = left.where(first.c.namespace == target.namespace)
    if limit is not None:
        # Each part ordered and limited on its own: the current rows are then read from
        # the order index and stop after a page, whatever the planner thinks of the other
        # part (which is sorted: it is as large as the changes since ``seq``).
        live = live.order_by(*ORDER_COLUMNS).limit(limit)
        left = left.order_by(first.c.namespace, first.c.name, first.c.cluster).limit(limit)
    states = sa.union_all(live, left).subquery("states")
    stmt = (sa.select(states.c.namespace, states.c.name, states.c.cluster, states.c.json)
            .order_by(states.c.namespace, states.c.name, states.c.cluster))
    return stmt.limit(limit) if limit is not None else stmt
