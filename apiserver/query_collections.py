"""Statements for collection resources (``apiserver.collections``): objects of several
types, from every cluster, in one keyset order.

A collection's page is one statement on ``resources`` whose condition is the OR, over
its types, of each type's own conditions exactly as ``apiserver.query.conditions``
composes them for a list of that type (type and version, the caller's scope,
``clusters=``, selectors, and whatever conditions a list gains there): a collection
filters as the lists of its types do, and never reads a type or cluster a list could not.

Order and pages: ``(grp, resource, namespace, name, cluster)``, unique (the primary key
holds the same columns) and served column for column by the index
``resources_list_order``. An OR is no index condition of an ordered scan, so the
statement also says ``grp = ANY(groups) AND resource = ANY(resources)``: implied by the
OR (it changes no result), and something the index can seek with while it still returns
rows in order (PostgreSQL 17 and later read ``= ANY`` on leading index columns in index
order). A page then reads the index from the continue key on, over its types only,
instead of every object of the groups that sort before them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from apiserver.query import Scope, Target, annotated, conditions
from syncer.schema import resources

COLLECTION_ORDER = (resources.c.grp, resources.c.resource, resources.c.namespace, resources.c.name,
                    resources.c.cluster)
CollectionKey = tuple[str, str, str, str, str]  # grp, resource, namespace, name, cluster


def _any(column: ColumnElement[Any], values: Sequence[str]) -> ColumnElement[bool]:
    return column == sa.func.any(sa.literal(sorted(set(values)), sa.ARRAY(sa.Text)))


def matching(targets: Sequence[Target], scope: Scope) -> list[ColumnElement[bool]]:
    """The conditions of the objects of any of ``targets``: each target's own, OR'ed, and
    the index bounds they imply. No targets: nothing matches."""
    if not targets:
        return [sa.false()]
    each = sa.or_(*(sa.and_(*conditions(t, scope)) for t in targets))
    return [_any(resources.c.grp, [t.group for t in targets]),
            _any(resources.c.resource, [t.resource for t in targets]), each]


def _after(key: Sequence[str]) -> ColumnElement[bool]:
    return sa.tuple_(*COLLECTION_ORDER) > sa.tuple_(*(sa.literal(v, sa.Text) for v in key))


def _api_version() -> ColumnElement[Any]:
    return sa.case((resources.c.grp == "", resources.c.version),
                   else_=resources.c.grp + "/" + resources.c.version)


def item_json(*, only_metadata: bool) -> ColumnElement[Any]:
    """An item as JSON text: the object with the cluster annotations, and its apiVersion and
    kind from the row (a collection mixes kinds, and a stored object's own apiVersion is
    whatever its sender wrote); ``only_metadata``: apiVersion, kind and metadata alone."""
    typed = sa.func.jsonb_build_object("apiVersion", _api_version(), "kind", resources.c.kind, type_=JSONB)
    if only_metadata:
        metadata = sa.func.jsonb_build_object("metadata", resources.c.object["metadata"], type_=JSONB)
        obj = typed.op("||", return_type=JSONB)(metadata)
    else:
        obj = resources.c.object.op("||", return_type=JSONB)(typed)
    return sa.cast(annotated(obj, resources.c.cluster), sa.Text)


def page_statement(targets: Sequence[Target], scope: Scope, *, limit: int, after: Sequence[str] | None = None,
                   only_metadata: bool = False) -> sa.Select[Any]:
    """Up to ``limit`` objects of ``targets`` after ``after`` in the collection order: the
    key columns, the type, and the item as JSON text."""
    stmt = sa.select(*COLLECTION_ORDER, resources.c.version, resources.c.kind,
                     item_json(only_metadata=only_metadata).label("json"))
    stmt = stmt.where(*matching(targets, scope))
    if after is not None:
        stmt = stmt.where(_after(after))
    return stmt.order_by(*COLLECTION_ORDER).limit(limit)


def remaining_statement(targets: Sequence[Target], scope: Scope, *, after: Sequence[str]) -> sa.Select[Any]:
    """How many objects of ``targets`` follow ``after``, counted exactly (asked for with
    ``withRemainingCount``: its cost grows with the rest of the collection)."""
    return sa.select(sa.func.count()).select_from(resources).where(*matching(targets, scope), _after(after))
