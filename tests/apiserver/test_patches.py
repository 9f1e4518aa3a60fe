"""JSON Patch and YAML diffs between versions: every patch, applied by an applier written
from the RFC, gives the newer version exactly."""

from __future__ import annotations

import random
from typing import Any

import pytest

from apiserver.patches import creation_patch, equal, json_patch, pointer, yaml_diff
from tests.patching import apply_patch

BASE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "a", "annotations": {"kubepedia.io/cluster": "east", "x~y": "1"},
                 "labels": {"app": "a"}},
    "data": {"n": 1, "list": [1, 2, 3], "nested": [{"a": 1}, {"b": [True, None]}]},
}


def _same(a: Any, b: Any) -> None:
    assert equal(a, b), (a, b)


@pytest.mark.parametrize("change", [
    lambda d: d["metadata"]["annotations"].update({"kubepedia.io/cluster": "west"}),
    lambda d: d["metadata"]["annotations"].update({"a/b~c": "new"}),
    lambda d: d["metadata"].pop("labels"),
    lambda d: d["data"].update({"n": 1.0}),  # a float is not the integer
    lambda d: d["data"].update({"n": True}),  # nor is a boolean
    lambda d: d["data"]["list"].append(4),
    lambda d: d["data"]["list"].pop(0),
    lambda d: d["data"].update({"list": []}),
    lambda d: d["data"].update({"list": {"now": "a map"}}),
    lambda d: d["data"]["nested"][1]["b"].insert(0, "first"),
    lambda d: d.clear(),
])
def test_a_patch_turns_one_version_into_the_next(change: Any) -> None:
    import copy

    new = copy.deepcopy(BASE)
    change(new)
    ops = json_patch(BASE, new)
    _same(apply_patch(BASE, ops), new)
    assert ops, "something changed"


def test_no_change_no_operations_and_pointers_are_escaped() -> None:
    assert json_patch(BASE, BASE) == []
    path = ["metadata", "annotations", "kubepedia.io/cluster"]
    assert pointer(path) == "/metadata/annotations/kubepedia.io~1cluster"
    assert pointer(["a~/b"]) == "/a~0~1b"


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.choice([0, 1, -7, 2**40])
    if kind == 1:
        return rng.choice([0.0, 1.0, 2.5])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return rng.choice(["", "a", "a/b", "~0", "x" * 10])
    if kind in (4, 5):
        keys = ["a", "b", "c/d", "e~f", "g"]
        return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]


def _mutated(rng: random.Random, doc: Any, depth: int = 0) -> Any:
    if rng.random() < 0.2 or depth > 5:
        return _random_json(rng, depth)
    if isinstance(doc, dict):
        out = {k: (_mutated(rng, v, depth + 1) if rng.random() < 0.5 else v) for k, v in doc.items()
               if rng.random() > 0.15}
        if rng.random() < 0.3:
            out[rng.choice(["new", "a", "z/z"])] = _random_json(rng, depth + 1)
        return out
    if isinstance(doc, list):
        out = [(_mutated(rng, v, depth + 1) if rng.random() < 0.5 else v) for v in doc if rng.random() > 0.15]
        if rng.random() < 0.3:
            out.insert(rng.randrange(len(out) + 1), _random_json(rng, depth + 1))
        return out
    return doc


def test_random_pairs() -> None:
    rng = random.Random(6902)
    for _ in range(3000):
        old = _random_json(rng)
        new = _mutated(rng, old)
        _same(apply_patch(old, json_patch(old, new)), new)


def test_creation_and_depth_beyond_recursion() -> None:
    _same(apply_patch({}, creation_patch(BASE)), BASE)
    old: Any = 1
    new: Any = 2
    for _ in range(5000):
        old, new = {"d": old}, {"d": new}
    ops = json_patch(old, new)
    assert len(ops) == 1 and ops[0]["path"] == "" and ops[0]["value"] is new


def test_yaml_diff_reads_like_a_diff() -> None:
    new = {**BASE, "data": {**BASE["data"], "n": 2}}
    text = yaml_diff(BASE, new, old_label="a (seq 1)", new_label="a (seq 2)")
    assert text.startswith("--- a (seq 1)\n+++ a (seq 2)\n@@")
    assert "-  n: 1\n+  n: 2\n" in text
    created = yaml_diff(None, {"kind": "X", "note": "caf\u00e9\x1b[31m"}, old_label="-", new_label="x")
    assert "+kind: X" in created and "\x1b" not in created and "\u00e9" not in created  # escaped
    assert yaml_diff(BASE, BASE, old_label="a", new_label="b") == ""
