"""Label and field selectors.

Grammar and supported fields follow
https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
and .../field-selectors/: labels support ``=``, ``==``, ``!=``, ``in``,
``notin``, ``key`` and ``!key``; fields support ``=``, ``==`` and ``!=`` on a
per-type set of fields, and anything else is a 400 ``field label not
supported``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubesim.errors import StatusError, bad_request

JSON = dict[str, Any]
Requirement = Callable[[dict[str, str]], bool]

# Fields every type supports, plus per-kind extras (the field label
# conversion functions registered by kube-apiserver for each kind).
COMMON_FIELDS = ("metadata.name", "metadata.namespace")
EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "Event": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
    "Node": ("spec.unschedulable",),
    "ReplicaSet": ("status.replicas",),
    "Job": ("status.successful",),
}


def supported_fields(kind: str) -> tuple[str, ...]:
    return COMMON_FIELDS + EXTRA_FIELDS.get(kind, ())


def _dig(obj: JSON, path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _field_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def extract_fields(kind: str, obj: JSON) -> dict[str, str]:
    """The selectable field values of one object, as strings."""
    out: dict[str, str] = {}
    for name in supported_fields(kind):
        if name == "source" and kind == "Event":
            out[name] = _field_text(_dig(obj, "source.component"))
        else:
            out[name] = _field_text(_dig(obj, name))
    return out


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()
    text: str = ""

    def empty(self) -> bool:
        return not self.requirements

    def matches(self, values: dict[str, str]) -> bool:
        return all(req(values) for req in self.requirements)


EVERYTHING = Selector()

_SPLIT = re.compile(r",(?![^()]*\))")
_SET_RE = re.compile(r"^\s*(\S+)\s+(in|notin)\s+\((.*)\)\s*$")
_OP_RE = re.compile(r"^\s*([^!=\s]+)\s*(==|!=|=)\s*(.*?)\s*$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _eq(key: str, value: str) -> Requirement:
    return lambda values: values.get(key) == value


def _ne(key: str, value: str) -> Requirement:
    return lambda values: values.get(key) != value


def _in(key: str, options: frozenset[str]) -> Requirement:
    return lambda values: values.get(key) in options


def _notin(key: str, options: frozenset[str]) -> Requirement:
    return lambda values: values.get(key) not in options


def _exists(key: str) -> Requirement:
    return lambda values: key in values


def _absent(key: str) -> Requirement:
    return lambda values: key not in values


def _check_key(key: str, text: str) -> None:
    if not _LABEL_KEY.match(key):
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in {text!r}")


def _label_requirement(term: str, text: str) -> Requirement:
    set_match = _SET_RE.match(term)
    if set_match:
        key, op, raw = set_match.groups()
        _check_key(key, text)
        options = frozenset(part.strip() for part in raw.split(",") if part.strip())
        return _in(key, options) if op == "in" else _notin(key, options)
    op_match = _OP_RE.match(term)
    if op_match:
        key, op, value = op_match.groups()
        _check_key(key, text)
        return _ne(key, value) if op == "!=" else _eq(key, value)
    stripped = term.strip()
    if stripped.startswith("!"):
        _check_key(stripped[1:].strip(), text)
        return _absent(stripped[1:].strip())
    _check_key(stripped, text)
    return _exists(stripped)


def parse_label_selector(text: str | None) -> Selector:
    if not text or not text.strip():
        return EVERYTHING
    terms = [term for term in _SPLIT.split(text) if term.strip()]
    return Selector(tuple(_label_requirement(term, text) for term in terms), text)


def parse_field_selector(text: str | None, kind: str) -> Selector:
    """Parse a field selector, rejecting fields the kind does not index."""
    if not text or not text.strip():
        return EVERYTHING
    allowed = supported_fields(kind)
    reqs: list[Requirement] = []
    for term in (part for part in text.split(",") if part.strip()):
        match = _OP_RE.match(term)
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        key, op, value = match.groups()
        if key not in allowed:
            raise StatusError(400, "BadRequest", f"field label not supported: {key}")
        reqs.append(_ne(key, value) if op == "!=" else _eq(key, value))
    return Selector(tuple(reqs), text)
