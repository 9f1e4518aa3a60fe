"""Query parameters of the history API (``apiserver.history``), checked like every read
parameter: a bad value is a 400 ``Status`` naming the parameter, never a 500.

Types are named the way kubectl users name them: ``pods``, ``deployments.apps``, and, for
types the clusters serve now, a singular, short name or kind (``deploy``, ``Deployment``).
A name no cluster serves now is taken as ``resource[.group]`` as written: its history
outlives the type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from apiserver.catalog import Catalog
from apiserver.params import MAX_CLUSTERS, bad_request
from apiserver.query_history import CHANGE_TYPES

MAX_TYPES = 100
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DNS_LABEL = re.compile(f"^{_LABEL}$", re.ASCII)  # cluster, namespace, resource names
DNS_SUBDOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$", re.ASCII)  # group names
TYPE_NAME = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9.]{0,252}$", re.ASCII)  # pods, deploy, deployments.apps
# Object names: most kinds take DNS subdomains, but some take more (RBAC's "system:..."),
# and the value is only ever a bound parameter; refuse what no kind allows.
_OBJECT_NAME = re.compile(r"^[^/\x00-\x1f\x7f]{1,253}$")


def shown(text: str) -> str:
    """A value quoted in a message: short, and ASCII."""
    return repr(text[:80].encode("ascii", "backslashreplace").decode())


def optional(query: Mapping[str, str], name: str, pattern: re.Pattern[str]) -> str | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    if not pattern.match(text):
        raise bad_request(f"invalid value for {name}: {shown(text)}")
    return text


def required(query: Mapping[str, str], name: str, pattern: re.Pattern[str]) -> str:
    value = optional(query, name, pattern)
    if value is None:
        raise bad_request(f"{name} is required")
    return value


def object_name(query: Mapping[str, str]) -> str:
    return required(query, "name", _OBJECT_NAME)


def limit(query: Mapping[str, str], *, default: int, most: int) -> int:
    """``limit``: absent or 0 is ``default``; above ``most`` is ``most`` (pages continue)."""
    text = query.get("limit") or "0"
    if not re.fullmatch(r"[0-9]{1,12}", text, re.ASCII):
        raise bad_request(f"invalid value for limit: {shown(text)} (expected a positive integer)")
    return min(int(text) or default, most)


def names(query: Mapping[str, str], name: str, pattern: re.Pattern[str], *,
          most: int = MAX_CLUSTERS) -> frozenset[str] | None:
    """A comma-separated set of names, or None when the parameter is absent."""
    text = query.get(name)
    if text is None:
        return None
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values or len(values) > most:
        raise bad_request(f"{name}: give between 1 and {most} values, comma separated")
    for value in values:
        if not pattern.match(value):
            raise bad_request(f"invalid value for {name}: {shown(value)}")
    return frozenset(values)


def change_types(query: Mapping[str, str]) -> frozenset[str] | None:
    text = query.get("changeTypes")
    if text is None:
        return None
    values = frozenset(v.strip().upper() for v in text.split(",") if v.strip())
    unknown = sorted(values - CHANGE_TYPES)
    if not values or unknown:
        raise bad_request(f"changeTypes: Unsupported value: {shown(','.join(unknown) or text)}: supported"
                          ' values: "ADDED", "MODIFIED", "DELETED"')
    return values


def resolve_type(catalog: Catalog, text: str, *, group: str | None = None,
                 param: str = "resource") -> tuple[str, str]:
    """``(group, resource)`` of a type as a user names it (see the module docstring)."""
    name, _, suffix = text.partition(".") if group is None else (text, "", group)
    group = suffix if group is None and suffix else group
    lowered = name.lower()
    if group is not None and group != "" and not DNS_SUBDOMAIN.match(group):
        raise bad_request(f"invalid value for {param}: {shown(text)}")
    served = [t for t in catalog.types if group is None or t.group == group]
    found = {(t.group, t.resource) for t in served if t.resource == lowered}
    if not found:
        found = {(t.group, t.resource) for t in served
                 if lowered in (t.singular_name, t.kind.lower(), *t.short_names)}
    if len(found) > 1 and ("", lowered) in found:
        return "", lowered  # the core group first, as kubectl resolves "pods"
    if len(found) > 1:
        choices = ", ".join(sorted(f"{r}.{g}" if g else r for g, r in found))
        raise bad_request(f"{param}: {shown(text)} is ambiguous: name one of {choices}")
    if found:
        return found.pop()
    if not DNS_LABEL.match(name):
        raise bad_request(f"invalid value for {param}: {shown(text)} (no cluster serves such a type; name it"
                          " as resource.group, e.g. deployments.apps)")
    return group or "", name


def types(catalog: Catalog, query: Mapping[str, str]) -> frozenset[tuple[str, str]] | None:
    """``types=pods,deployments.apps``: (group, resource) pairs."""
    given = names(query, "types", re.compile(r"^[^,\x00-\x1f]{1,300}$"), most=MAX_TYPES)
    if given is None:
        return None
    return frozenset(resolve_type(catalog, text, param="types") for text in given)
