"""Query parameters of list, get and watch requests, checked the way kube-apiserver checks
them (https://kubernetes.io/docs/reference/using-api/api-concepts/): every bad value is a
400 ``Status`` naming the parameter, never a 500.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from kube.media import negotiate
from kube.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from kube.status import StatusError

MAX_CLUSTERS = 1000  # names in one ``clusters=`` parameter
MAX_LIMIT = 10_000  # larger requests are served in pages of this size internally
MAX_RESOURCE_VERSION = 2**63 - 1  # a PostgreSQL bigint
INCLUDE_OBJECT = frozenset({"None", "Metadata", "Object"})
RV_MATCH = frozenset({"", "NotOlderThan", "Exact"})
TRUE = frozenset({"true", "1"})
FALSE = frozenset({"false", "0", ""})


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


@dataclass(frozen=True, kw_only=True, slots=True)
class ListOptions:
    label_selector: str = ""
    field_selector: str = ""
    limit: int = 0  # 0: everything
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""
    watch: bool = False
    allow_bookmarks: bool = False
    send_initial_events: bool | None = None
    timeout_seconds: int | None = None
    include_object: str = "Metadata"
    shape: str = ""
    clusters: frozenset[str] | None = None  # ``clusters=a,b``: only these


def _flag(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name, "").lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise bad_request(f"invalid value for {name}: {query[name]!r} (expected true or false)")


def _integer(query: Mapping[str, str], name: str) -> int | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    if not re.fullmatch(r"-?[0-9]{1,12}", text):
        raise bad_request(f"invalid value for {name}: {text!r} (expected an integer)")
    value = int(text)
    if value < 0:
        raise bad_request(f"invalid value for {name}: {value} (must not be negative)")
    return value


def parse_resource_version(text: str) -> int:
    """An aggregated resourceVersion: a change-log sequence number."""
    if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) > MAX_RESOURCE_VERSION:
        raise bad_request(f'invalid resource version "{text[:40]}"')
    return int(text)


CLUSTER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _clusters(query: Mapping[str, str]) -> frozenset[str] | None:
    text = query.get("clusters")
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or len(names) > MAX_CLUSTERS:
        raise bad_request(f"clusters: give between 1 and {MAX_CLUSTERS} cluster names, comma separated")
    for name in names:
        if not CLUSTER_NAME.match(name):
            raise bad_request(f"clusters: {name[:80]!r} is not a cluster name")
    return frozenset(names)


def label_selector(text: str) -> LabelSelector:
    """``labelSelector``, or a 400 naming it (Kubernetes' own wording follows the name)."""
    try:
        return parse_label_selector(text)
    except SelectorError as exc:
        raise bad_request(f"labelSelector: {exc}") from exc


def field_selector(text: str, kind: str) -> FieldSelector:
    """``fieldSelector`` for objects of ``kind``, JSON paths allowed, or a 400 naming it."""
    try:
        return parse_field_selector(text, kind, json_paths=True)
    except SelectorError as exc:
        message = str(exc)  # the JSON path grammar's own messages name it already
        raise bad_request(message if "fieldSelector" in message else f"fieldSelector: {message}") from exc


def too_large(wanted: int, current: int) -> StatusError:
    """A resourceVersion from the future: kube-apiserver's 504 with a retry hint."""
    cause = {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
    return StatusError(504, "Timeout", f"Too large resource version: {wanted}, current: {current}",
                       {"causes": [cause], "retryAfterSeconds": 1}, headers={"Retry-After": "1"})


def check_resource_version(opts: ListOptions, current: int, *, what: str = "list",
                           again: str = "list without resourceVersion") -> None:
    """A list's ``resourceVersion`` against the sequence ``current`` it reads: newer is a 504
    to retry, an ``Exact`` older one a 410 (only the latest state is kept)."""
    if not opts.resource_version or opts.resource_version == "0":
        return
    wanted = parse_resource_version(opts.resource_version)
    if wanted > current:
        raise too_large(wanted, current)
    if opts.resource_version_match == "Exact" and wanted != current:
        raise StatusError(410, "Expired", f"the {what} at resourceVersion {wanted} is not retained; {again}")


def list_options(query: Mapping[str, str], accept: str) -> ListOptions:
    rv, match = query.get("resourceVersion", ""), query.get("resourceVersionMatch", "")
    token = query.get("continue", "")
    if match not in RV_MATCH:
        raise bad_request(f"resourceVersionMatch: Unsupported value: {match!r}: supported values:"
                          ' "Exact", "NotOlderThan"')
    if match and not rv:
        raise bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
    if token and rv and rv != "0":
        raise bad_request("specifying resource version is not allowed when using continue")
    if rv and rv != "0":
        parse_resource_version(rv)
    include = query.get("includeObject", "Metadata") or "Metadata"
    if include not in INCLUDE_OBJECT:
        raise bad_request(f"includeObject: Unsupported value: {include!r}: supported values:"
                          ' "None", "Metadata", "Object"')
    watch = _flag(query, "watch")
    initial = query.get("sendInitialEvents")
    return ListOptions(
        label_selector=query.get("labelSelector", ""),
        field_selector=query.get("fieldSelector", ""),
        limit=min(_integer(query, "limit") or 0, MAX_LIMIT) if not watch else 0,
        continue_token=token,
        resource_version=rv,
        resource_version_match=match,
        watch=watch,
        allow_bookmarks=_flag(query, "allowWatchBookmarks"),
        send_initial_events=None if initial is None else _flag(query, "sendInitialEvents"),
        timeout_seconds=_integer(query, "timeoutSeconds"),
        include_object=include,
        shape=negotiate(accept),
        clusters=_clusters(query),
    )
