"""Pure functions: patches, selectors, table helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kube.tables import age
from kubesim.errors import StatusError
from kubesim.media import negotiate
from kubesim.patch import json_patch, merge_patch, strategic_merge
from kubesim.selectors import parse_field_selector, parse_label_selector
from kubesim.watch import SharedJoins


def test_merge_patch_rfc7386() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2}}, {"a": None, "b": {"d": 3}}) == {"b": {"c": 2, "d": 3}}
    assert merge_patch({"l": [1, 2]}, {"l": [3]}) == {"l": [3]}


def test_json_patch_ops_and_failed_test() -> None:
    doc = {"a": {"b": [1, 2]}}
    out = json_patch(doc, [{"op": "add", "path": "/a/b/-", "value": 3},
                           {"op": "move", "from": "/a/b", "path": "/c"},
                           {"op": "copy", "from": "/c", "path": "/d"},
                           {"op": "remove", "path": "/a"}])
    assert out == {"c": [1, 2, 3], "d": [1, 2, 3]} and doc == {"a": {"b": [1, 2]}}
    with pytest.raises(StatusError) as err:
        json_patch(doc, [{"op": "test", "path": "/a/b/0", "value": 9}])
    assert err.value.code == 422


def test_strategic_merge_directives() -> None:
    target = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}],
                       "finalizers": ["x"]}}
    patch = {"spec": {
        "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
        "containers": [{"name": "a", "image": "2"}, {"name": "c", "$patch": "delete"}],
        "finalizers": ["y"],
    }}
    out = strategic_merge(target, patch)
    assert out["spec"]["containers"] == [{"name": "b", "image": "1"}, {"name": "a", "image": "2"}]
    assert out["spec"]["finalizers"] == ["x", "y"]
    deleted = strategic_merge(target, {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}})
    assert [c["name"] for c in deleted["spec"]["containers"]] == ["b"]
    retained = strategic_merge({"s": {"a": 1, "b": 2}}, {"s": {"$retainKeys": ["b"], "b": 3}})
    assert retained == {"s": {"b": 3}}


def test_label_selector_rejects_garbage() -> None:
    with pytest.raises(StatusError):
        parse_label_selector("a in (x")
    assert parse_label_selector("").empty()


def test_field_selector_message() -> None:
    with pytest.raises(StatusError) as err:
        parse_field_selector("status.phase=Running", "ConfigMap")
    assert err.value.message == "field label not supported: status.phase"
    assert parse_field_selector("involvedObject.kind=Pod", "Event").matches(
        {"involvedObject.kind": "Pod"})


def test_accept_negotiation() -> None:
    assert negotiate("application/json;as=Table;v=v1;g=meta.k8s.io, application/json") == "Table"
    assert negotiate("application/json") == ""
    assert negotiate("application/json;as=Table;v=v1;g=meta.k8s.io;q=0.1,application/json") == ""
    assert negotiate("application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json") == ""
    metadata = ("application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;"
                "v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
                "application/json")
    assert negotiate(metadata) == "PartialObjectMetadataList"


def test_age_like_kubectl() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    stamp = (now - timedelta(seconds=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert age(stamp, now) == "90s"
    stamp = (now - timedelta(hours=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert age(stamp, now) == "30h"


def test_shared_joins_join_each_batch_once() -> None:
    lines = [b'{"n":%d}\n' % n for n in range(6)]
    joins = SharedJoins()
    first = joins.join(lines[:3])
    assert first == b"".join(lines[:3])
    assert joins.join(list(lines[:3])) is first  # another watcher's list of the same lines
    assert joins.join(lines[1:4]) == b"".join(lines[1:4])
    # The same ends and length with other bytes (equal but other objects) are not taken
    # for the same batch.
    copies = [bytes(bytearray(line)) for line in lines[:3]]
    assert joins.join(copies) is not first
    for n in range(SharedJoins.KEEP + 1):
        joins.join(lines[n : n + 1])
    assert joins.join(list(lines[:3])) is not first  # pushed out by later batches
    assert joins.join([]) == b""
