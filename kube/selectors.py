"""Label and field selectors: one parser, a tree that callers evaluate or compile.

kubesim evaluates the tree in memory (:meth:`LabelSelector.matches`); the read API
compiles the same tree to SQL. Grammar and wording follow kube-apiserver
(k8s.io/apimachinery/pkg/labels/selector.go and pkg/fields/selector.go;
https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
and .../field-selectors/):

* labels: ``key``, ``!key``, ``key=v``, ``key==v``, ``key!=v``, ``key in (a,b)``,
  ``key notin (a,b)``, ``key>N``, ``key<N``; requirements are ANDed. ``!=`` and
  ``notin`` match objects that lack the key, as in Kubernetes.
* fields: ``f=v``, ``f==v``, ``f!=v`` on ``metadata.name``, ``metadata.namespace`` and
  the fields kube-apiserver registers for the kind; anything else is refused with
  ``field label not supported: f``.
* fields on the read API (``json_paths=True``): a selector the above accepts is read
  exactly so; any other in the grammar of ``kube.fieldpaths`` (any JSON path, ``in``,
  ``notin``, exists, ``>``, ``<``). There a field Kubernetes selects on for the kind,
  named by its dotted path with ``=``, ``!=``, ``in`` or ``notin``, keeps Kubernetes'
  meaning (the field's value as kube-apiserver renders it, its default when missing:
  ``FIELD_DEFAULTS``); every other requirement is on the JSON path as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from kube import fieldpaths
from kube.fieldpaths import PathRequirement

LabelOp = Literal["=", "!=", "in", "notin", "exists", "!", "gt", "lt"]
FieldOp = Literal["=", "!=", "in", "notin"]

MAX_SELECTOR_LENGTH = 16 * 1024  # bounded before parsing; real selectors are far shorter

_NAME_PART = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL_VALUE = re.compile(r"^(" + _NAME_PART + r")?$")
_KEY_NAME = re.compile(r"^" + _NAME_PART + r"$")
_KEY_PREFIX = re.compile(r"^" + _DNS_SUBDOMAIN + r"$")
_INTEGER = re.compile(r"^-?[0-9]{1,18}$")  # what fits a 64-bit integer, as Kubernetes parses it
_SPECIAL = "!=(),<>"


class SelectorError(ValueError):
    """A selector that cannot be parsed or names an unsupported field (HTTP 400)."""


# -- label selectors -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Requirement:
    """One label requirement; ``values`` holds one value for ``=``/``!=``/``gt``/``lt``."""

    key: str
    op: LabelOp
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "exists":
                return present
            case "!":
                return not present
            case "=" | "in":
                return value in self.values
            case "!=" | "notin":
                return value not in self.values
            case "gt" | "lt":
                if value is None or not _INTEGER.match(value):
                    return False
                bound = int(self.values[0])
                return int(value) > bound if self.op == "gt" else int(value) < bound
        return False  # pragma: no cover - the Literal is exhaustive


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()
    text: str = ""

    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(req.matches(labels) for req in self.requirements)


EVERYTHING = LabelSelector()


def _tokens(text: str) -> list[str]:
    """Kubernetes' selector lexer: identifiers, operators and punctuation."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif text.startswith(("==", "!="), i):
            out.append(text[i:i + 2])
            i += 2
        elif ch in _SPECIAL:
            out.append(ch)
            i += 1
        else:
            start = i
            while i < len(text) and not text[i].isspace() and text[i] not in _SPECIAL:
                i += 1
            out.append(text[start:i])
    return out


def _is_identifier(token: str | None) -> bool:
    return token is not None and token not in ("==", "!=") and token not in _SPECIAL


def check_label_key(key: str) -> str | None:
    """Why ``key`` is not a valid label key, or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _KEY_PREFIX.match(prefix)):
        return "prefix part must be a lowercase RFC 1123 subdomain of at most 253 characters"
    if not name or len(name) > 63 or not _KEY_NAME.match(name):
        return ("name part must consist of alphanumeric characters, '-', '_' or '.', must start "
                "and end with an alphanumeric character, and be at most 63 characters")
    return None


def check_label_value(value: str) -> str | None:
    """Why ``value`` is not a valid label value, or None."""
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _LABEL_VALUE.match(value):
        return ("a valid label must be an empty string or consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character")
    return None


class _LabelParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        token = self.peek()
        self.pos += 1
        return token

    def fail(self, found: str | None, expected: str) -> SelectorError:
        return SelectorError(f"unable to parse requirement: found '{found or ''}', expected: {expected}")

    def parse(self) -> LabelSelector:
        requirements: list[Requirement] = []
        while True:
            requirements.append(self.requirement())
            token = self.take()
            if token is None:
                return LabelSelector(tuple(requirements), self.text)
            if token != ",":
                raise self.fail(token, "',' or 'end of string'")

    def requirement(self) -> Requirement:
        negated = self.peek() == "!"
        if negated:
            self.take()
        key = self.take()
        if not _is_identifier(key) or key in ("in", "notin"):
            raise self.fail(key, "identifier")
        assert key is not None
        self.check_key(key)
        following = self.peek()
        if negated or following in (None, ","):
            if negated and following not in (None, ","):
                raise self.fail(following, "',' or 'end of string'")
            return Requirement(key, "!" if negated else "exists")
        op = self.take()
        if op in ("=", "=="):
            return Requirement(key, "=", (self.value(key),))
        if op == "!=":
            return Requirement(key, "!=", (self.value(key),))
        if op in (">", "<"):
            return self.numeric(key, "gt" if op == ">" else "lt")
        if op in ("in", "notin"):
            return Requirement(key, "in" if op == "in" else "notin", self.value_set(key, op))
        raise self.fail(op, "'=', '!=', '==', 'in', 'notin', '>', '<'")

    def check_key(self, key: str) -> None:
        problem = check_label_key(key)
        if problem:
            raise SelectorError(f'unable to parse requirement: key: Invalid value: "{key}": {problem}')

    def value(self, key: str) -> str:
        token = self.peek()
        if token in (None, ","):
            return ""  # "a=" selects an empty value, as in Kubernetes
        if not _is_identifier(token):
            raise self.fail(token, "identifier")
        self.take()
        assert token is not None
        self.check_value(key, token)
        return token

    def check_value(self, key: str, value: str) -> None:
        problem = check_label_value(value)
        if problem:
            raise SelectorError(
                f'unable to parse requirement: values[0][{key}]: Invalid value: "{value}": {problem}')

    def numeric(self, key: str, op: LabelOp) -> Requirement:
        token = self.take()
        if token is None or not _INTEGER.match(token):
            raise SelectorError(
                f"unable to parse requirement: for 'gt', 'lt' operators, the value must be an integer:"
                f" {token or ''!r}")
        return Requirement(key, op, (token,))

    def value_set(self, key: str, op: str) -> tuple[str, ...]:
        token = self.take()
        if token != "(":
            raise self.fail(token, "'('")
        values: list[str] = []
        while True:
            token = self.peek()
            if token == ")":
                self.take()
                break
            if token == ",":
                self.take()
                values.append("")
                continue
            if not _is_identifier(token):
                raise self.fail(token, "',', ')' or identifier")
            self.take()
            assert token is not None
            self.check_value(key, token)
            values.append(token)
            if self.peek() == ",":
                self.take()
                if self.peek() == ")":
                    values.append("")
        if not values:
            raise SelectorError(
                f"unable to parse requirement: for '{op}' operator, values set can't be empty")
        return tuple(dict.fromkeys(values))


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse ``labelSelector``; SelectorError with Kubernetes' wording when malformed."""
    if text is None or not text.strip():
        return EVERYTHING
    if len(text) > MAX_SELECTOR_LENGTH:
        raise SelectorError(f"label selector is longer than {MAX_SELECTOR_LENGTH} characters")
    return _LabelParser(text).parse()


# -- field selectors -------------------------------------------------------------------------------

# Fields every type supports, plus per-kind extras: the field label conversion functions
# kube-apiserver registers for each kind (pkg/registry/*/strategy.go, ...).
COMMON_FIELDS = ("metadata.name", "metadata.namespace")
EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
            "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs",
            "status.nominatedNodeName"),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
              "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
              "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
    "Node": ("spec.unschedulable",),
    "ReplicaSet": ("status.replicas",),
    "ReplicationController": ("status.replicas",),
    "Job": ("status.successful",),
    "CertificateSigningRequest": ("spec.signerName",),
}
# Where a field's value lives when it is not simply the dotted path.
FIELD_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("Event", "source"): ("source", "component"),
    ("Pod", "status.podIPs"): ("status", "podIP"),
    ("Job", "status.successful"): ("status", "succeeded"),  # JobToSelectableFields
}
# The value of a field that an object lacks. kube-apiserver renders its typed object: a
# boolean or integer left out of the JSON (omitempty) is false or 0 there, not "".
# Absent strings stay "" (their defaults, e.g. restartPolicy Always, are written into the
# object by the member's kube-apiserver, so synced objects carry them).
FIELD_DEFAULTS: dict[tuple[str, str], str] = {
    ("Pod", "spec.hostNetwork"): "false",
    ("Node", "spec.unschedulable"): "false",
    ("Job", "status.successful"): "0",
    ("ReplicaSet", "status.replicas"): "0",
    ("ReplicationController", "status.replicas"): "0",
}


def supported_fields(kind: str) -> tuple[str, ...]:
    return COMMON_FIELDS + EXTRA_FIELDS.get(kind, ())


def field_path(kind: str, field: str) -> tuple[str, ...]:
    """The JSON path of a selectable field within an object of ``kind``."""
    return FIELD_PATHS.get((kind, field), tuple(field.split(".")))


def field_default(kind: str, field: str) -> str:
    """What a selector compares with when an object of ``kind`` lacks ``field``."""
    return FIELD_DEFAULTS.get((kind, field), "")


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """A requirement on a field Kubernetes selects on; ``value`` for ``=``/``!=``, ``values``
    for ``in``/``notin`` (read API only)."""

    field: str
    op: FieldOp
    value: str = ""
    values: tuple[str, ...] = ()

    def choices(self) -> tuple[str, ...]:
        return self.values if self.op in ("in", "notin") else (self.value,)

    def matches(self, values: Mapping[str, str]) -> bool:
        found = values.get(self.field, "") in self.choices()
        return found if self.op in ("=", "in") else not found


AnyFieldRequirement = FieldRequirement | PathRequirement


@dataclass(frozen=True, slots=True)
class FieldSelector:
    requirements: tuple[AnyFieldRequirement, ...] = ()
    text: str = ""

    def empty(self) -> bool:
        return not self.requirements

    def matches(self, values: Mapping[str, str]) -> bool:
        """On an object's selectable field values (``field_values``): for selectors of
        Kubernetes' fields only."""
        return all(self._standard(req).matches(values) for req in self.requirements)

    def selects(self, kind: str, obj: Mapping[str, Any]) -> bool:
        """On an object of ``kind``: every requirement, JSON paths included."""
        standard = any(isinstance(req, FieldRequirement) for req in self.requirements)
        values = field_values(kind, obj) if standard else {}
        return all(req.matches(values) if isinstance(req, FieldRequirement) else req.matches(obj)
                   for req in self.requirements)

    @staticmethod
    def _standard(req: AnyFieldRequirement) -> FieldRequirement:
        if not isinstance(req, FieldRequirement):
            raise TypeError("a selector with JSON path requirements matches objects: use selects()")
        return req


NO_FIELDS = FieldSelector()
_FIELD_TERM = re.compile(r"^\s*([^!=\s]+)\s*(==|!=|=)\s*(.*?)\s*$")


def _unescape(value: str) -> str:
    # fields.EscapeValue: "\\" "\," "\=" stand for the characters themselves.
    return re.sub(r"\\(.)", r"\1", value)


def _field_terms(text: str) -> list[str]:
    return [t for t in re.split(r"(?<!\\),", text) if t.strip()]


def parse_field_selector(text: str | None, kind: str, *, json_paths: bool = False) -> FieldSelector:
    """Parse ``fieldSelector`` for objects of ``kind``: as kube-apiserver does (refusing
    fields it does not select on), or with ``json_paths`` as the read API does (module
    docstring)."""
    if text is None or not text.strip():
        return NO_FIELDS
    if len(text) > MAX_SELECTOR_LENGTH:
        raise SelectorError(f"field selector is longer than {MAX_SELECTOR_LENGTH} characters")
    if not json_paths:
        return _kubernetes_fields(text, kind)
    try:
        return _kubernetes_fields(text, kind)
    except SelectorError:
        pass  # not Kubernetes' selector: the wider grammar says what is wrong, if anything
    try:
        terms = fieldpaths.parse(text)
        requirements = tuple(_classified(term, kind) for term in terms)
    except fieldpaths.PathSyntaxError as exc:
        raise SelectorError(str(exc)) from exc
    return FieldSelector(requirements, text)


def _classified(term: fieldpaths.Term, kind: str) -> AnyFieldRequirement:
    """A field Kubernetes selects on keeps its meaning; anything else is a JSON path."""
    name = fieldpaths.dotted(term.path)
    if name is not None and name in supported_fields(kind):
        if term.op in ("=", "!="):
            return FieldRequirement(name, "=" if term.op == "=" else "!=", term.values[0])
        if term.op in ("in", "notin"):
            return FieldRequirement(name, "in" if term.op == "in" else "notin", values=term.values)
    return fieldpaths.requirement(term)


def _kubernetes_fields(text: str, kind: str) -> FieldSelector:
    allowed = supported_fields(kind)
    requirements: list[FieldRequirement] = []
    for term in _field_terms(text):
        match = _FIELD_TERM.match(term)
        if not match:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term.strip()}'")
        field, op, value = match.groups()
        if field not in allowed:
            raise SelectorError(f'field label not supported: {field}')
        requirements.append(FieldRequirement(field, "!=" if op == "!=" else "=", _unescape(value)))
    return FieldSelector(tuple(requirements), text)


def _dig(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    cur: Any = obj
    for part in path:
        # Decoded JSON is plain dicts: the exact type test spares the slower ABC check
        # on every write of a simulated cluster.
        if type(cur) is not dict and not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def field_text(value: Any) -> str:
    """How kube-apiserver renders a field value for selection (bools lower-case)."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@cache
def _field_plan(kind: str) -> tuple[tuple[str, tuple[str, ...], str], ...]:
    """Each selectable field of ``kind``: its name, JSON path and default."""
    return tuple((name, field_path(kind, name), field_default(kind, name))
                 for name in supported_fields(kind))


def field_values(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """The selectable field values of one object, as strings (a missing field: its default)."""
    out: dict[str, str] = {}
    for name, path, default in _field_plan(kind):
        value = _dig(obj, path)
        out[name] = default if value is None else field_text(value)
    return out
