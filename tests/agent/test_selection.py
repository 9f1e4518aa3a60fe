from __future__ import annotations

from pathlib import Path

import pytest

from agent.selection import Selection, SelectionError, load_selection, parse_selection
from kube.resources import ResourceType


def rt(resource: str, group: str = "") -> ResourceType:
    return ResourceType(group=group, version="v1", resource=resource, kind="K", namespaced=True)


PODS, DEPLOY, STS = rt("pods"), rt("deployments", "apps"), rt("statefulsets", "apps")
WIDGETS = rt("widgets", "example.com")
NETPOL = rt("networkpolicies", "networking.k8s.io")


def test_defaults_select_everything_and_drop_secret_data() -> None:
    selection = Selection()
    assert selection.select([PODS, DEPLOY, WIDGETS]) == [PODS, DEPLOY, WIDGETS]
    assert selection.keep_secret_data is False


def test_patterns() -> None:
    selection = parse_selection(
        {"resources": {"include": ["*.apps", "pods"], "exclude": ["statefulsets.apps"]}}
    )
    assert selection.select([PODS, DEPLOY, STS, WIDGETS]) == [PODS, DEPLOY]
    assert not parse_selection({"resources": {"include": ["deployments"]}}).selects(DEPLOY)


def test_custom_resources_switch() -> None:
    selection = parse_selection({"resources": {"customResources": False}})
    assert selection.select([PODS, DEPLOY, NETPOL, WIDGETS]) == [PODS, DEPLOY, NETPOL]


def test_namespace_rules() -> None:
    selection = parse_selection({"namespaces": {"include": ["a", "b"], "exclude": ["kube-*"]}})
    assert selection.namespaces_include == ("a", "b")
    assert selection.namespace_excluded("kube-system")
    assert not selection.namespace_excluded("default")
    assert not selection.namespace_excluded(None)


def test_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "sel.yaml"
    path.write_text("keepSecretData: true\ndiscoveryRefreshSeconds: 60\nresources:\n  exclude: [secrets]\n")
    selection = load_selection(path)
    assert selection.keep_secret_data and selection.discovery_refresh == 60
    assert selection.overridden(exclude=None, include=("pods",)).include == ("pods",)
    assert selection.overridden(exclude=None).exclude == ("secrets",)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("resources: [1]", "resources must be a mapping"),
        ("resource: {}", "unknown key(s) resource"),
        ("keepSecretData: yes please", "keepSecretData must be true or false"),
        ("namespaces: {include: ['Not_A_Name']}", "is not a namespace name"),
        ("resources: {include: pods}", "resources.include must be a list"),
        ("discoveryRefreshSeconds: -1", "must be positive"),
        ("a: [", "while parsing"),
    ],
)
def test_bad_files_are_one_clear_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SelectionError) as caught:
        load_selection(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SelectionError, match=r"nope\.yaml"):
        load_selection(tmp_path / "nope.yaml")
