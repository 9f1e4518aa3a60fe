"""Field selectors on JSON paths: the grammar, the read API's choice between Kubernetes'
fields and JSON paths, and the in-memory evaluator (agreement with SQL is checked in
tests/apiserver/test_field_paths.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from kube import fieldpaths
from kube.fieldpaths import PathRequirement, Term, parse, reach, scalar_equals, time_micros
from kube.selectors import FieldRequirement, SelectorError, field_values, parse_field_selector


def _paths(text: str) -> list[Term]:
    return parse(text)


@pytest.mark.parametrize(("text", "terms"), [
    ("spec.replicas=3", [Term(("spec", "replicas"), "=", ("3",))]),
    ("spec.replicas == 3", [Term(("spec", "replicas"), "=", ("3",))]),
    ("status.podIP!=", [Term(("status", "podIP"), "!=", ("",))]),
    ("metadata.annotations['a.b/c']=x", [Term(("metadata", "annotations", "a.b/c"), "=", ("x",))]),
    ('metadata.annotations["it\'s \\"q\\""]', [Term(("metadata", "annotations", 'it\'s "q"'), "exists")]),
    (r"metadata.labels['a\\b']", [Term(("metadata", "labels", "a\\b"), "exists")]),
    ("spec.containers[].ports[].containerPort>80",
     [Term(("spec", "containers", None, "ports", None, "containerPort"), "gt", ("80",))]),
    ("['odd key'][]['x']", [Term(("odd key", None, "x"), "exists")]),
    ("!status.podIP, spec.x-y_z", [Term(("status", "podIP"), "!"), Term(("spec", "x-y_z"), "exists")]),
    ("a in (x, y ,x), b notin(z)", [Term(("a",), "in", ("x", "y")), Term(("b",), "notin", ("z",))]),
    ("a in (x,)", [Term(("a",), "in", ("x", ""))]),
    (r"a=x\,y\=z\\, b in (p\)q\,r)", [Term(("a",), "=", ("x,y=z\\",)), Term(("b",), "in", ("p)q,r",))]),
    ("a=f(x) , ,b<2026-01-02T03:04:05Z,", [Term(("a",), "=", ("f(x)",)),
                                           Term(("b",), "lt", ("2026-01-02T03:04:05Z",))]),
    ("a.in=1", [Term(("a", "in"), "=", ("1",))]),
])
def test_grammar(text: str, terms: list[Term]) -> None:
    assert _paths(text) == terms


@pytest.mark.parametrize(("text", "message"), [
    ("a.", "bad path: expected a key"),
    ("a..b=1", "bad path: expected a key"),
    ("a/b=1", "unknown operator after the path a"),
    ("a[0]=1", "bad path: '[' starts []"),
    ("a['x", "bad path: a quoted key is not closed"),
    ("a['x'", "bad path: expected ']' after a quoted key"),
    (r"a['\x']", "invalid escape sequence"),
    ("[]=1", "a path starts with a key"),
    ("=1", "bad path: expected a key"),
    ("a ~ b", "unknown operator after the path a"),
    ("a>=1", "unknown operator '>='"),
    ("a=b=c", "unescaped '=' in a value"),
    (r"a=\q", "invalid escape sequence '\\\\q'"),
    ("a in x", "'in' must be followed by a set of values"),
    ("a in ()", "can't be empty"),
    ("a in (x", "is not closed"),
    ("ain (x)", "unknown operator"),
    ("!a=1", "'!path' (does not exist) takes no operator"),
    ("a=1 b=2", "unescaped '='"),
    ("a b", "unknown operator"),
    ("a\x00", "NUL"),
    ("a=\udcff", "not valid Unicode"),
    (",".join(["a"] * 21), "more than 20 requirements"),
    (".".join(["a"] * 17), "more than 16 steps"),
    ("a['" + "k" * 254 + "']", "longer than 253 characters"),
    ("k" * 254, "longer than 253 characters"),
    ("a in (" + ",".join(str(i) for i in range(101)) + ")", "more than 100 values"),
])
def test_bad_grammar_says_what_and_where(text: str, message: str) -> None:
    with pytest.raises(fieldpaths.PathSyntaxError) as info:
        parse(text)
    assert str(info.value).startswith("invalid fieldSelector: ")
    assert message in str(info.value)


def test_bounds_are_inclusive() -> None:
    assert len(parse(",".join(["a"] * 20))) == 20
    assert len(parse(".".join(["a"] * 16))[0].path) == 16
    assert parse("k" * 253)[0].path == ("k" * 253,)
    assert len(parse("a in (" + ",".join(str(i) for i in range(100)) + ")")[0].values) == 100


@pytest.mark.parametrize(("text", "message"), [
    ("spec.replicas>abc", "bad number or time after '>' in spec.replicas: 'abc' is neither"),
    ("spec.replicas<1e100", "bad number or time"),  # a three-digit exponent is no number here
    ("a<2026-02-30T00:00:00Z", "bad number or time"),  # no such day
    ("a<2026-01-01", "bad number or time"),
    ("a>0x10", "bad number or time"),
])
def test_bounds_are_numbers_or_times(text: str, message: str) -> None:
    with pytest.raises(SelectorError, match=r"^invalid fieldSelector: ") as info:
        parse_field_selector(text, "Pod", json_paths=True)
    assert message in str(info.value)


def test_kubernetes_fields_keep_their_meaning() -> None:
    selector = parse_field_selector("spec.hostNetwork in (false), status.phase notin (Failed,Unknown),"
                                    "spec.nodeName!=n2, status.podIP", "Pod", json_paths=True)
    assert selector.requirements == (
        FieldRequirement("spec.hostNetwork", "in", values=("false",)),
        FieldRequirement("status.phase", "notin", values=("Failed", "Unknown")),
        FieldRequirement("spec.nodeName", "!=", "n2"),
        PathRequirement(("status", "podIP"), "exists"))
    pod: dict[str, Any] = {"spec": {"nodeName": "n1"}, "status": {"phase": "Running", "podIP": "10.0.0.1"}}
    assert selector.selects("Pod", pod)  # hostNetwork is missing: false, as kube-apiserver reads it
    assert not selector.selects("Pod", {**pod, "status": {"phase": "Failed", "podIP": "1"}})
    # The same path on a kind without that field is a JSON path: missing is missing.
    on_crd = parse_field_selector("spec.hostNetwork in (false)", "Widget", json_paths=True)
    assert on_crd.requirements == (PathRequirement(("spec", "hostNetwork"), "in", ("false",)),)
    assert not on_crd.selects("Widget", {"spec": {}})
    assert on_crd.selects("Widget", {"spec": {"hostNetwork": False}})


def test_a_selector_kubernetes_accepts_is_read_as_before() -> None:
    for text in ("metadata.name=a=b", r"metadata.name=a\qb", " spec.nodeName = n1 "):
        assert parse_field_selector(text, "Pod", json_paths=True) == parse_field_selector(text, "Pod")
    # Without json_paths (kubesim, as kube-apiserver): anything else is refused as before.
    with pytest.raises(SelectorError, match=r"^field label not supported: spec\.replicas$"):
        parse_field_selector("spec.replicas=3", "Deployment")
    assert parse_field_selector("spec.replicas=3", "Deployment", json_paths=True).requirements == (
        PathRequirement(("spec", "replicas"), "=", ("3",)),)
    assert not parse_field_selector("", "Pod", json_paths=True).requirements


def test_a_selector_of_json_paths_matches_objects_only() -> None:
    selector = parse_field_selector("spec.replicas=3", "Deployment", json_paths=True)
    with pytest.raises(TypeError):
        selector.matches(field_values("Deployment", {}))


def test_reach_follows_keys_and_lists_only() -> None:
    obj = {"spec": {"containers": [{"image": "a", "ports": [{"p": 1}, {"p": None}, {}]},
                                   {"image": None}, "text", {"ports": {"p": 2}}],
                    "nodeName": "n", "empty": [], "null": None}}
    assert list(reach(obj, ("spec", "containers", None, "image"))) == ["a"]
    assert list(reach(obj, ("spec", "containers", None, "ports", None, "p"))) == [1]
    assert list(reach(obj, ("spec", "containers", "image"))) == []  # no unwrapping of a list
    assert list(reach(obj, ("spec", "nodeName", None))) == []  # [] on a string reaches nothing
    assert list(reach(obj, ("spec", "empty"))) == [[]]
    assert list(reach(obj, ("spec", "null"))) == []


@pytest.mark.parametrize(("item", "value", "equal"), [
    ("3", "3", True), (3, "3", True), (3.0, "3", True), (1.5, "1.50", True), (0.1, "0.1", True),
    (100, "1e2", True), (0, "-0", True), (3, "03", False), (3, "3.1", False), ("03", "03", True),
    (True, "true", True), (False, "false", True), (True, "True", False), (1, "true", False),
    ("true", "true", True), (None, "null", False), (None, "", False), ([3], "3", False),
    ({"a": 1}, "{}", False), (10**20, "100000000000000000000", True),
])
def test_scalar_equality(item: Any, value: str, equal: bool) -> None:
    assert scalar_equals(item, value) is equal


@pytest.mark.parametrize(("selector", "obj", "matches"), [
    ("spec.replicas>2", {"spec": {"replicas": 3}}, True),
    ("spec.replicas>2", {"spec": {"replicas": "3"}}, False),  # a string is no number
    ("spec.replicas>2", {"spec": {"replicas": True}}, False),
    ("spec.replicas<2.5", {"spec": {"replicas": 2}}, True),
    ("spec.x>2026-01-01T00:00:00Z", {"spec": {"x": "2026-01-01T00:30:00+00:30"}}, False),  # same instant
    ("spec.x>2026-01-01T00:00:00Z", {"spec": {"x": "2026-01-01T00:30:00.000001+00:30"}}, True),
    ("spec.x<2026-01-01T00:00:00Z", {"spec": {"x": "2025-12-31 23:59:59.999999z"}}, True),
    ("spec.x<2026-01-01T00:00:00Z", {"spec": {"x": "yesterday"}}, False),
    ("spec.x<2026-01-01T00:00:00Z", {"spec": {"x": 3}}, False),
    ("spec.l[]>1", {"spec": {"l": [0, "5", 2]}}, True),
    ("spec.l!=1", {"spec": {}}, True),
    ("spec.l[] notin (1,2)", {"spec": {"l": [3, 2]}}, False),
    ("spec.l[] notin (1,2)", {"spec": {"l": [3, "x"]}}, True),
    ("spec.l", {"spec": {"l": None}}, False),
    ("!spec.l", {"spec": {"l": None}}, True),
    ("spec.l", {"spec": {"l": {}}}, True),
])
def test_evaluator(selector: str, obj: dict[str, Any], matches: bool) -> None:
    assert parse_field_selector(selector, "Widget", json_paths=True).selects("Widget", obj) is matches


def test_times_read_as_kube_time_reads_them() -> None:
    assert time_micros("1970-01-01T00:00:00Z") == 0
    assert time_micros("1970-01-01T01:00:00+01:00") == 0
    assert time_micros("2026-01-02T03:04:05.1234565Z") == (1767323045 * 10**6 + 123456)
    assert time_micros("2016-12-31T23:59:60Z") == time_micros("2017-01-01T00:00:00Z")  # a leap second
    assert time_micros("2024-02-29T00:00:00Z") is not None
    for bad in ("2023-02-29T00:00:00Z", "2026-01-02T03:04:05", "2026-01-02T24:00:00Z", "2026-1-2T03:04:05Z",
                "2026-01-02T03:04:05Z\n", "\u0662026-01-02T03:04:05Z"):
        assert time_micros(bad) is None, bad
    assert fieldpaths.json_number("1e99") == Decimal("1e99") and fieldpaths.json_number("1e100") is None
