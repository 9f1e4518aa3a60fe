"""What a caller may read: a union of rules, each a product of clusters, namespaces and types.

A grant reads "pods and deployments in clusters a and b; every type in namespace payments
of cluster c": no single product of the three axes says that, a union of products does.
A ``Scope`` is that union and is turned into SQL here, as an OR of one AND per rule, every
name a bound parameter (never SQL text from a request or a grant file). With one rule the
conditions are exactly the plain ANDs the list, search and history plans were built for.

Secrets are never read by accident: a rule for every type (``types`` None) leaves out
Secrets unless it says ``secrets``; a rule naming types reads Secrets only when it names
them. Cluster-scoped objects (namespace "") belong to rules without a namespace list, as a
Kubernetes RoleBinding never grants them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

SECRETS = ("", "secrets")


def one_of(column: ColumnElement[Any], values: frozenset[str]) -> ColumnElement[bool]:
    return column == sa.func.any(sa.literal(sorted(values), sa.ARRAY(sa.Text)))


@dataclass(frozen=True, kw_only=True, slots=True)
class Rule:
    """One product of clusters, namespaces and types; None means every one on that axis
    (for ``types``: every type but Secrets, unless ``secrets``)."""

    clusters: frozenset[str] | None = None
    namespaces: frozenset[str] | None = None
    types: frozenset[tuple[str, str]] | None = None  # (group, resource)
    secrets: bool = False  # with ``types`` None: Secrets too

    def allows_type(self, group: str, resource: str) -> bool:
        if self.types is not None:
            return (group, resource) in self.types
        return self.secrets or (group, resource) != SECRETS

    def allows_cluster(self, cluster: str) -> bool:
        return self.clusters is None or cluster in self.clusters

    def allows_namespace(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    def allows_group(self, group: str) -> bool:
        """Whether some type of ``group`` may be read."""
        return self.types is None or any(g == group for g, _ in self.types)


@dataclass(frozen=True, slots=True)
class Columns:
    """Where a relation keeps an object's identity; None where it has no such column (the
    condition on that axis then cannot be expressed, and ``scope_where`` says so)."""

    cluster: ColumnElement[Any]
    namespace: ColumnElement[Any] | None
    group: ColumnElement[Any] | None
    resource: ColumnElement[Any] | None


@dataclass(frozen=True, slots=True)
class Scope:
    """The union of ``rules``: an object is readable when one rule allows its cluster,
    namespace and type. No rules: nothing."""

    rules: tuple[Rule, ...] = ()

    @classmethod
    def of(cls, *, clusters: Iterable[str] | None = None, namespaces: Iterable[str] | None = None,
           types: Iterable[tuple[str, str]] | None = None) -> Scope:
        """A one-rule scope."""
        return cls((Rule(clusters=None if clusters is None else frozenset(clusters),
                         namespaces=None if namespaces is None else frozenset(namespaces),
                         types=None if types is None else frozenset(types)),))

    def allows_type(self, group: str, resource: str) -> bool:
        return any(r.allows_type(group, resource) for r in self.rules)

    def allows_cluster(self, cluster: str) -> bool:
        return any(r.allows_cluster(cluster) for r in self.rules)

    def allows_group(self, group: str) -> bool:
        return any(r.allows_group(group) for r in self.rules)

    def allows(self, *, cluster: str, namespace: str, group: str, resource: str) -> bool:
        """Whether one object may be read (the SQL condition, in memory: watches)."""
        return any(r.allows_cluster(cluster) and r.allows_namespace(namespace)
                   and r.allows_type(group, resource) for r in self.rules)

    def may_read_some(self, *, group: str, resource: str, namespace: str | None = None,
                      cluster: str | None = None) -> bool:
        """Whether some object of the type (in ``namespace``, ``cluster`` when given) may be
        read: decided from the grant alone, never from what is stored."""
        return any(r.allows_type(group, resource) and (namespace is None or r.allows_namespace(namespace))
                   and (cluster is None or r.allows_cluster(cluster)) for r in self.rules)

    def clusters(self) -> frozenset[str] | None:
        """Every cluster some rule allows, or None for every one."""
        named: set[str] = set()
        for rule in self.rules:
            if rule.clusters is None:
                return None
            named |= rule.clusters
        return frozenset(named)

    def of_type(self, group: str, resource: str) -> Scope:
        """The rules that allow the type."""
        return Scope(tuple(r for r in self.rules if r.allows_type(group, resource)))

    def whole_namespaces(self) -> Scope:
        """The rules without a namespace list: what figures kept per cluster and type (not
        per namespace) may be shown for."""
        return Scope(tuple(r for r in self.rules if r.namespaces is None))


EVERYTHING_SCOPE = Scope((Rule(secrets=True),))
NOTHING_SCOPE = Scope()


def _type_condition(rule: Rule, cols: Columns) -> list[ColumnElement[bool]]:
    if cols.group is None or cols.resource is None:
        raise ValueError("a scope over types needs the type's columns")
    if rule.types is not None:
        if not rule.types:
            return [sa.false()]
        return [sa.or_(*(sa.and_(cols.group == g, cols.resource == r) for g, r in sorted(rule.types)))]
    if rule.secrets:
        return []
    return [sa.not_(sa.and_(cols.group == SECRETS[0], cols.resource == SECRETS[1]))]


def _rule_condition(rule: Rule, cols: Columns, *, typed: bool) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [] if typed else _type_condition(rule, cols)
    if rule.clusters is not None:
        where.append(one_of(cols.cluster, rule.clusters))
    if rule.namespaces is not None:
        if cols.namespace is None:
            raise ValueError("a scope over namespaces needs the namespace column")
        where.append(one_of(cols.namespace, rule.namespaces))
    return where


def scope_where(scope: Scope, cols: Columns, *,
                of_type: tuple[str, str] | None = None) -> list[ColumnElement[bool]]:
    """The scope as conditions on ``cols``: an OR of one AND per rule. ``of_type``: the
    query is of one type already, so only the rules allowing it count, without their type
    condition (one such rule gives the plain conditions the indexes were chosen for)."""
    rules = scope.rules if of_type is None else scope.of_type(*of_type).rules
    each = [_rule_condition(r, cols, typed=of_type is not None) for r in rules]
    if not each:
        return [sa.false()]
    if any(not conds for conds in each):
        return []  # one rule allows every row: the others add nothing
    if len(each) == 1:
        return each[0]
    return [sa.or_(*(sa.and_(*conds) for conds in each))]


def scope_conditions(scope: Scope, table: sa.FromClause, *,
                     of_type: tuple[str, str] | None = None) -> list[ColumnElement[bool]]:
    """The caller's scope on ``resources``, ``change_log`` or any relation with their identity
    columns (``cluster``, ``namespace``, ``grp``, ``resource``)."""
    c = table.c
    return scope_where(scope, Columns(c.cluster, c.namespace, c.grp, c.resource), of_type=of_type)
