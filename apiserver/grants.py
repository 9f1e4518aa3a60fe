"""Grants: which clusters, namespaces and resource types a subject or group may read.

The grants file (YAML), reloaded on change (``apiserver.reloading``)::

    grants:
      - users: [alice]                      # user names, as authentication gives them
        groups: [payments-team]             # and/or groups
        rules:
          - clusters: [prod-eu, prod-us]    # omitted or ["*"]: every cluster
            namespaces: ["*"]               # omitted or ["*"]: every namespace, and
                                            # cluster-scoped objects (nodes, ...)
            resources: [pods, deployments.apps]
          - clusters: [staging]
            namespaces: [payments]
            resources: ["*"]                # every type but secrets

A resource is ``plural`` for the core group or ``plural.group`` (as ``kubectl get``
takes it). ``"*"`` is every type except ``secrets``, which is read only where a rule
names it (``["*", "secrets"]`` for all of them). A caller's scope is the union of the
rules of every grant naming its user or one of its groups; none: nothing.

Everything in the file is checked when it is read: an unknown key, a wrong type, an empty
name is an error naming the grant and the field, never a rule read loosely.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from apiserver.scope import SECRETS, Rule, Scope

WILDCARD = "*"
_GRANT_KEYS = frozenset({"users", "groups", "rules"})
_RULE_KEYS = frozenset({"clusters", "namespaces", "resources"})
MAX_NAME = 253


@dataclass(frozen=True, kw_only=True, slots=True)
class User:
    """Who a request is from, as authentication says."""

    name: str
    groups: tuple[str, ...] = ()


ANONYMOUS = User(name="system:anonymous", groups=("system:unauthenticated",))


@dataclass(frozen=True, kw_only=True, slots=True)
class Grant:
    users: frozenset[str]
    groups: frozenset[str]
    rules: tuple[Rule, ...]

    def applies(self, user: User) -> bool:
        return user.name in self.users or any(g in self.groups for g in user.groups)


@dataclass(frozen=True, slots=True)
class Grants:
    grants: tuple[Grant, ...] = ()

    def scope_for(self, user: User) -> Scope:
        return Scope(tuple(r for g in self.grants if g.applies(user) for r in g.rules))


def _names(value: Any, where: str, *, wildcard: bool) -> frozenset[str] | None:
    """A list of names; None for "every one" (omitted, or ``["*"]`` where allowed)."""
    if value is None and wildcard:
        return None
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: a non-empty list of names")
    names = set()
    for item in value:
        if not isinstance(item, str) or not item or len(item) > MAX_NAME:
            raise ValueError(f"{where}: {item!r} is not a name")
        names.add(item)
    if WILDCARD in names:
        if not wildcard or len(names) > 1:
            alone = "stands alone" if wildcard else "is not allowed here"
            raise ValueError(f'{where}: "*" {alone}')
        return None
    return frozenset(names)


def _resource(text: str) -> tuple[str, str]:
    """``pods`` -> ("", "pods"); ``deployments.apps`` -> ("apps", "deployments")."""
    resource, _, group = text.partition(".")
    return group, resource


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: a mapping of clusters, namespaces and resources")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown field {sorted(map(str, unknown))[0]!r}")
    if "resources" not in raw:
        raise ValueError(f"{where}.resources: required (\"*\" for every type but secrets)")
    resources = raw["resources"]
    if not isinstance(resources, list) or not resources:
        raise ValueError(f"{where}.resources: a non-empty list of resources")
    named = _names([r for r in resources if r != WILDCARD] or [WILDCARD], f"{where}.resources", wildcard=True)
    types = None if named is None else frozenset(_resource(r) for r in named)
    if WILDCARD in resources:
        extra = types or frozenset()
        if extra - {SECRETS}:
            raise ValueError(f"{where}.resources: with \"*\", only secrets may be named")
        types, secrets = None, SECRETS in extra
    else:
        secrets = False
    return Rule(clusters=_names(raw.get("clusters"), f"{where}.clusters", wildcard=True),
                namespaces=_names(raw.get("namespaces"), f"{where}.namespaces", wildcard=True),
                types=types, secrets=secrets)


def _grant(raw: Any, where: str) -> Grant:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: a mapping of users, groups and rules")
    unknown = set(raw) - _GRANT_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown field {sorted(map(str, unknown))[0]!r}")
    users = _names(raw["users"], f"{where}.users", wildcard=False) if "users" in raw else frozenset()
    groups = _names(raw["groups"], f"{where}.groups", wildcard=False) if "groups" in raw else frozenset()
    if not users and not groups:
        raise ValueError(f"{where}: names no users and no groups")
    rules = raw.get("rules")
    if not isinstance(rules, list) or not rules:
        raise ValueError(f"{where}.rules: a non-empty list of rules")
    return Grant(users=users or frozenset(), groups=groups or frozenset(),
                 rules=tuple(_rule(r, f"{where}.rules[{i}]") for i, r in enumerate(rules)))


def parse_grants(text: str) -> Grants:
    """The grants of a file's text, or a ValueError saying where it is wrong."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML: {exc}") from exc
    if not isinstance(doc, Mapping) or set(doc) != {"grants"}:
        raise ValueError("expected a mapping with one key, grants")
    raw = doc["grants"]
    if not isinstance(raw, list):
        raise ValueError("grants: a list")
    return Grants(tuple(_grant(g, f"grants[{i}]") for i, g in enumerate(raw)))


def everything_for(users: Sequence[str]) -> Grants:
    """Every object of every type, Secrets included, for ``users``: what ``serve`` grants the
    read token it generates when no grants file is given."""
    return Grants((Grant(users=frozenset(users), groups=frozenset(),
                         rules=(Rule(secrets=True),)),))
