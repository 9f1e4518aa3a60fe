"""The shared selector parser: grammar, Kubernetes' wording for errors, evaluation."""

from __future__ import annotations

import pytest

from kube.selectors import (
    FieldRequirement,
    Requirement,
    SelectorError,
    field_values,
    parse_field_selector,
    parse_label_selector,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("app=web", (Requirement("app", "=", ("web",)),)),
    ("app==web", (Requirement("app", "=", ("web",)),)),
    ("app!=web", (Requirement("app", "!=", ("web",)),)),
    ("app", (Requirement("app", "exists"),)),
    ("!app", (Requirement("app", "!"),)),
    ("env in (prod, staging)", (Requirement("env", "in", ("prod", "staging")),)),
    ("env notin (prod)", (Requirement("env", "notin", ("prod",)),)),
    ("tier=,x", (Requirement("tier", "=", ("",)), Requirement("x", "exists"))),
    ("n>3,n<10", (Requirement("n", "gt", ("3",)), Requirement("n", "lt", ("10",)))),
    ("example.com/team=a, app.kubernetes.io/name in (x,y)",
     (Requirement("example.com/team", "=", ("a",)),
      Requirement("app.kubernetes.io/name", "in", ("x", "y")))),
])
def test_label_grammar(text: str, expected: tuple[Requirement, ...]) -> None:
    assert parse_label_selector(text).requirements == expected


@pytest.mark.parametrize(("text", "fragment"), [
    ("a in (x", "found '', expected: ',', ')' or identifier"),
    ("a in ()", "values set can't be empty"),
    ("a=(b", "found '(', expected: identifier"),
    ("a b", "found 'b', expected: '=', '!=', '==', 'in', 'notin'"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("=b", "found '=', expected: identifier"),
    ("a>x", "the value must be an integer"),
    ("a=" + "x" * 64, "must be no more than 63 characters"),
    ("a=-b", 'values[0][a]: Invalid value: "-b"'),
    ("-a=b", 'key: Invalid value: "-a"'),
    ("Bad_Prefix/a=b", "prefix part"),
    ("!a=b", "found '=', expected: ',' or 'end of string'"),
])
def test_label_errors(text: str, fragment: str) -> None:
    with pytest.raises(SelectorError) as err:
        parse_label_selector(text)
    assert fragment in str(err.value)
    assert str(err.value).startswith("unable to parse requirement")


def test_label_semantics_follow_kubernetes() -> None:
    labels = {"app": "web", "n": "5"}
    assert parse_label_selector("app=web").matches(labels)
    assert not parse_label_selector("app=db").matches(labels)
    assert parse_label_selector("tier!=front").matches(labels)  # a missing key matches !=
    assert parse_label_selector("tier notin (a)").matches(labels)
    assert not parse_label_selector("tier in (a)").matches(labels)
    assert parse_label_selector("!tier,app").matches(labels)
    assert parse_label_selector("n>4,n<6").matches(labels)
    assert not parse_label_selector("app>1").matches(labels)  # not an integer: no match
    assert parse_label_selector("").empty() and parse_label_selector(None).matches(labels)


def test_selector_length_is_bounded() -> None:
    with pytest.raises(SelectorError):
        parse_label_selector("a," * 10_000)
    with pytest.raises(SelectorError):
        parse_field_selector("metadata.name=x," * 2_000, "Pod")


def test_field_selectors() -> None:
    selector = parse_field_selector("spec.nodeName=n1,status.phase!=Failed", "Pod")
    assert selector.requirements == (FieldRequirement("spec.nodeName", "=", "n1"),
                                     FieldRequirement("status.phase", "!=", "Failed"))
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "hostNetwork": True},
           "status": {"phase": "Running"}}
    values = field_values("Pod", pod)
    assert values["spec.hostNetwork"] == "true" and values["metadata.namespace"] == ""
    assert selector.matches(values)
    event = {"source": {"component": "kubelet"}, "involvedObject": {"kind": "Pod"}}
    assert parse_field_selector("source=kubelet,involvedObject.kind=Pod", "Event").matches(
        field_values("Event", event))
    assert parse_field_selector(r"metadata.name=a\,b", "Pod").requirements[0].value == "a,b"


def test_a_missing_field_reads_as_kubernetes_renders_it() -> None:
    assert field_values("Pod", {"metadata": {"name": "p"}})["spec.hostNetwork"] == "false"
    assert field_values("Node", {"metadata": {"name": "n"}})["spec.unschedulable"] == "false"
    assert field_values("Job", {"status": {}})["status.successful"] == "0"
    assert field_values("Job", {"status": {"succeeded": 3}})["status.successful"] == "3"
    assert field_values("ReplicaSet", {})["status.replicas"] == "0"
    assert field_values("Pod", {})["spec.restartPolicy"] == ""  # strings: "" (defaulted on write)


def test_field_errors_use_kubernetes_wording() -> None:
    with pytest.raises(SelectorError, match=r"^field label not supported: spec\.nodeName$"):
        parse_field_selector("spec.nodeName=x", "ConfigMap")
    with pytest.raises(SelectorError, match=r"^invalid selector: 'garbage'; can't understand 'garbage'$"):
        parse_field_selector("garbage", "Pod")
