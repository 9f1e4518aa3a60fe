"""Clusterpedia's search parameters, on every list path: which clusters, namespaces and
names, a fuzzy name, a creation window, an owner, an order, and what the page carries.

Each condition comes as a URL parameter or as a ``search.clusterpedia.io/...`` label in
``labelSelector`` (``internalstorage.clusterpedia.io/fuzzy-name`` for the fuzzy name), as
Clusterpedia accepts them; a URL parameter wins over its label. The labels are taken out
of the selector, so they never reach the objects' labels. A ``clusterpedia.io`` label we do
not serve (``offset``, ``inject-events``, ``forward``, an unknown one) is a 400: nothing a
caller asks for is silently dropped.

Differences from Clusterpedia, each on purpose:
- owner conditions work across every cluster (Clusterpedia asks for exactly one): an
  owner and its dependents are matched within one cluster, by uid;
- ``continue`` is our signed keyset token whatever the order (Clusterpedia's is an
  offset), so deep pages cost what the first does;
- with ``orderby``, every order ends with namespace, name and cluster (those not named)
  in the direction of the last field named, so the order is total and a page boundary
  is exact;
- ``withRemainingCount=true`` counts exactly, with or without selectors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from apiserver.params import CLUSTER_NAME, FALSE, TRUE, bad_request
from apiserver.times import BadTime, parse_time
from kube.selectors import LabelSelector, Requirement
from kube.status import StatusError

SEARCH_PREFIX = "search.clusterpedia.io/"
FUZZY_NAME = "internalstorage.clusterpedia.io/fuzzy-name"
ORDER_FIELDS = ("cluster", "namespace", "name", "created_at", "resource_version")
MAX_NAMES = 1000  # names or namespaces in one list
MAX_ORDER = len(ORDER_FIELDS)
MAX_SENIORITY = 8  # owner chains in Kubernetes are short: Deployment > ReplicaSet > Pod
MAX_FUZZY = 10
MAX_TEXT = 253  # a name, an owner's name or uid: Kubernetes' own longest name
_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.:]*[A-Za-z0-9])?$")  # names, namespaces, uids
_GROUP_RESOURCE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# What we serve of the labels, and the URL parameter each stands for.
_LABELS = {
    "clusters": "clusters", "namespaces": "namespaces", "names": "names", "orderby": "orderby",
    "owner-uid": "ownerUID", "owner-name": "ownerName", "owner-gr": "ownerGR",
    "owner-seniority": "ownerSeniority", "since": "since", "before": "before",
    "with-continue": "withContinue", "with-remaining-count": "withRemainingCount", "limit": "limit",
}
_MULTI = frozenset({"clusters", "namespaces", "names", "orderby"})  # labels taking ``in (...)``
_ORDER_SEPARATOR = {"url": " ", "label": "_"}  # ``name desc`` in a URL, ``name_desc`` in a label


@dataclass(frozen=True, kw_only=True, slots=True)
class OrderBy:
    field: str  # one of ORDER_FIELDS
    desc: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Owner:
    """Objects whose controller is this owner (seniority 0), or whose owner's controller is
    (1), and so on. By uid, or by name (with a type, ``resource.group``, when given)."""

    uid: str | None = None
    name: str | None = None
    group: str | None = None
    resource: str | None = None
    seniority: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Search:
    clusters: frozenset[str] | None = None
    namespaces: frozenset[str] | None = None
    names: frozenset[str] | None = None
    fuzzy_names: tuple[str, ...] = ()  # each a substring the name contains
    since: datetime | None = None  # creationTimestamp >= since
    before: datetime | None = None  # creationTimestamp < before
    owner: Owner | None = None
    order: tuple[OrderBy, ...] = ()
    with_continue: bool = True
    with_remaining_count: bool | None = None  # None: Kubernetes' rule (apiserver.objects)
    only_metadata: bool = False
    limit: int | None = None  # from the label: the URL's ``limit`` is the list's own
    given: tuple[str, ...] = field(default=())  # parameters given, for messages

    def narrows(self) -> bool:
        """Whether a condition other than clusters, namespaces and names applies."""
        return bool(self.fuzzy_names or self.since or self.before or self.owner)

    def fingerprint(self) -> list[object]:
        """What a continue token must be bound to."""
        return [sorted(self.namespaces or ()), sorted(self.names or ()), list(self.fuzzy_names),
                self.since.isoformat() if self.since else None,
                self.before.isoformat() if self.before else None,
                None if self.owner is None else [self.owner.uid, self.owner.name, self.owner.group,
                                                 self.owner.resource, self.owner.seniority],
                [[o.field, o.desc] for o in self.order], self.only_metadata]


NO_SEARCH = Search()


def _list(name: str, values: list[str], *, check: re.Pattern[str] = _NAME) -> frozenset[str]:
    items = [v.strip() for v in values if v.strip()]
    if not items or len(items) > MAX_NAMES:
        raise bad_request(f"{name}: give between 1 and {MAX_NAMES} values, comma separated")
    for item in items:
        if len(item) > MAX_TEXT or not check.match(item):
            raise bad_request(f"{name}: {item[:80]!r} is not a valid value")
    return frozenset(items)


def _text(name: str, value: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_TEXT or not _NAME.match(value):
        raise bad_request(f"{name}: {value[:80]!r} is not a valid value")
    return value


def _flag(name: str, value: str) -> bool:
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise bad_request(f"invalid value for {name}: {value[:40]!r} (expected true or false)")


def _time(name: str, value: str) -> datetime:
    try:
        return parse_time(value.strip())
    except BadTime as exc:
        raise bad_request(f"invalid value for {name}: {value[:64]!r} ({exc}); expected RFC 3339"
                          " (2006-01-02T15:04:05Z), '2006-01-02 15:04:05' (UTC), 2006-01-02, or unix"
                          " seconds or milliseconds") from exc


def _order(name: str, values: list[str], *, separator: str) -> tuple[OrderBy, ...]:
    out: list[OrderBy] = []
    for value in (v.strip() for v in values):
        if not value:
            continue
        parts = value.rsplit(separator, 1) if separator == "_" else value.split()
        desc = len(parts) == 2 and parts[1] == "desc"
        # ``created_at`` holds the label form's separator: only a trailing ``_desc``/``_asc``
        # is a direction there.
        if separator == "_" and len(parts) == 2 and parts[1] not in ("desc", "asc"):
            parts = [value]
        if len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("desc", "asc")):
            raise bad_request(f"{name}: {value[:80]!r} is not 'FIELD' or 'FIELD desc'")
        if parts[0] not in ORDER_FIELDS:
            raise bad_request(f"{name}: unknown field {parts[0][:80]!r}; the fields are"
                              f" {', '.join(ORDER_FIELDS)}")
        if any(o.field == parts[0] for o in out):
            raise bad_request(f"{name}: {parts[0]} is named twice")
        out.append(OrderBy(field=parts[0], desc=desc))
    if not out or len(out) > MAX_ORDER:
        raise bad_request(f"{name}: give between 1 and {MAX_ORDER} fields")
    return tuple(out)


def _seniority(name: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,3}", value.strip()) or int(value) > MAX_SENIORITY:
        raise bad_request(f"invalid value for {name}: {value[:40]!r} (expected an integer from 0 to"
                          f" {MAX_SENIORITY})")
    return int(value)


def _group_resource(name: str, value: str) -> tuple[str, str]:
    """``replicasets.apps`` is (apps, replicasets); ``pods`` is the core group's."""
    value = value.strip()
    if len(value) > MAX_TEXT or not _GROUP_RESOURCE.match(value):
        raise bad_request(f"{name}: {value[:80]!r} is not RESOURCE or RESOURCE.GROUP")
    resource, _, group = value.partition(".")
    return group, resource


def _from_labels(labels: LabelSelector) -> tuple[dict[str, list[str]], list[str], LabelSelector]:
    """The search conditions given as labels (by URL parameter name), fuzzy names, and the
    selector that is left for the objects' labels."""
    found: dict[str, list[str]] = {}
    fuzzy: list[str] = []
    kept: list[Requirement] = []
    for req in labels.requirements:
        if req.key == FUZZY_NAME:
            if req.op not in ("=", "in"):
                raise bad_request(f"labelSelector: {FUZZY_NAME} takes = or in")
            fuzzy.extend(req.values)
            continue
        if "clusterpedia.io" not in req.key:
            kept.append(req)
            continue
        suffix = req.key.removeprefix(SEARCH_PREFIX)
        if not req.key.startswith(SEARCH_PREFIX) or suffix not in _LABELS:
            raise bad_request(f"labelSelector: {req.key[:100]!r} is not a search condition kubepedia"
                              " serves (offset paging, event injection and forwarding are not served;"
                              " page with limit and continue)")
        if req.op not in ("=", "in") or (req.op == "in" and len(req.values) > 1 and suffix not in _MULTI):
            raise bad_request(f"labelSelector: {req.key} takes = (or in, for lists)")
        found.setdefault(_LABELS[suffix], []).extend(req.values)
    if len(fuzzy) > MAX_FUZZY:
        raise bad_request(f"labelSelector: at most {MAX_FUZZY} fuzzy names")
    left = replace(labels, requirements=tuple(kept)) if len(kept) != len(labels.requirements) else labels
    return found, fuzzy, left


def search_options(query: Mapping[str, str], labels: LabelSelector) -> tuple[Search, LabelSelector]:
    """The search conditions of a list request, and its label selector without them."""
    from_labels, fuzzy, left = _from_labels(labels)

    def given(name: str) -> tuple[list[str], str] | None:
        if name in query and query[name].strip():
            return (query[name].split(",") if name in _MULTI else [query[name]]), "url"
        if name in from_labels:
            return from_labels[name], "label"
        return None

    def single(name: str) -> str | None:
        got = given(name)
        return None if got is None else got[0][0]

    values: dict[str, object] = {}
    for name in ("clusters", "namespaces", "names"):
        if (got := given(name)) is not None:
            values[name] = _list(name, got[0], check=CLUSTER_NAME if name == "clusters" else _NAME)
    if (got := given("orderby")) is not None:
        values["order"] = _order("orderby", got[0], separator=_ORDER_SEPARATOR[got[1]])
    for name in ("since", "before"):
        if (text := single(name)) is not None:
            values[name] = _time(name, text)
    since, before = values.get("since"), values.get("before")
    if isinstance(since, datetime) and isinstance(before, datetime) and before < since:
        raise bad_request("since is after before: no object can match")
    owner = _owner(single)
    if owner is not None:
        values["owner"] = owner
    for name, key in (("withContinue", "with_continue"), ("withRemainingCount", "with_remaining_count"),
                      ("onlyMetadata", "only_metadata")):
        if (text := single(name)) is not None:
            values[key] = _flag(name, text)
    if "limit" in from_labels and "limit" not in query:
        text = from_labels["limit"][0]
        if not re.fullmatch(r"[0-9]{1,12}", text):
            raise bad_request(f"invalid value for {SEARCH_PREFIX}limit: {text[:40]!r}")
        values["limit"] = int(text)
    if fuzzy:
        values["fuzzy_names"] = tuple(_text(FUZZY_NAME, f) for f in fuzzy)
    names = [n for n in ("clusters", "namespaces", "names", "orderby", "since", "before", "ownerUID",
                         "ownerName", "ownerGR", "ownerSeniority", "withContinue", "withRemainingCount",
                         "onlyMetadata") if given(n) is not None]
    if fuzzy:
        names.append("fuzzy-name")
    return Search(**values, given=tuple(names)), left  # type: ignore[arg-type]


def _owner(get: Callable[[str], str | None]) -> Owner | None:
    uid, name = get("ownerUID"), get("ownerName")
    gr, seniority = get("ownerGR"), get("ownerSeniority")
    if uid is None and name is None:
        if gr is not None or seniority is not None:
            raise bad_request("ownerGR and ownerSeniority need ownerUID or ownerName")
        return None
    if uid is not None and name is not None:
        raise bad_request("ownerUID and ownerName are exclusive: give one")
    if uid is not None and gr is not None:
        raise bad_request("ownerGR goes with ownerName: a uid names its owner already")
    group, resource = _group_resource("ownerGR", gr) if gr is not None else (None, None)
    return Owner(uid=_text("ownerUID", uid) if uid is not None else None,
                 name=_text("ownerName", name) if name is not None else None,
                 group=group, resource=resource,
                 seniority=_seniority("ownerSeniority", seniority) if seniority is not None else 0)


def check_plain(search: Search, *, what: str,
                allowed: tuple[str, ...] = ("clusters", "namespaces", "names")) -> None:
    """For requests that take only some of the search conditions (watches, ``asOf``)."""
    extra = [g for g in search.given if g not in allowed]
    if extra:
        raise StatusError(400, "BadRequest", f"{', '.join(extra)}: not supported with {what}")
