"""Pages and batches packed into bodies the syncer accepts (pure: no I/O)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from agent import protocol
from agent.events import WatchEvent
from agent.packing import Limits, change_bodies, page_bodies
from tests.factories import PODS, pod

SMALL = Limits(max_body=64 * 1024, max_items=10, max_object=20 * 1024)


def _sized(name: str, rv: int, size: int, **extra: Any) -> dict[str, Any]:
    obj = pod(name, rv, **extra)
    obj["data"] = ""
    obj["data"] = "x" * (size - len(orjson.dumps(obj)))
    assert len(orjson.dumps(obj)) == size
    return obj


def test_a_small_page_or_batch_is_one_body_of_the_documented_shape() -> None:
    items = [pod("a", 1), pod("b", 2)]
    [body] = page_bodies(PODS, items)
    assert orjson.loads(body) == protocol.snapshot_page_body(PODS, items)
    changes = [WatchEvent(type="ADDED", object=pod("a", 1)), WatchEvent(type="DELETED", object=pod("b", 2))]
    [part] = change_bodies(PODS, changes, resource_version="2", after="0")
    assert orjson.loads(part.data) == protocol.changes_body(PODS, changes, resource_version="2", after="0")


def test_pages_are_split_by_bytes_and_by_count() -> None:
    items = [_sized(f"p{i}", i, 15 * 1024) for i in range(9)] + [pod(f"s{i}", i) for i in range(25)]
    bodies = page_bodies(PODS, items, SMALL)
    decoded = [orjson.loads(b) for b in bodies]
    assert all(len(b) <= SMALL.max_body for b in bodies)
    assert all(len(d["items"]) <= SMALL.max_items for d in decoded)
    sent = [i["metadata"]["name"] for d in decoded for i in d["items"]]
    assert sent == [i["metadata"]["name"] for i in items]
    assert len(bodies) >= 5


def test_an_object_over_the_limit_is_sent_as_its_identity() -> None:
    big = _sized("big", 7, SMALL.max_object + 1)
    [body] = page_bodies(PODS, [pod("a", 1), big], SMALL)
    decoded = orjson.loads(body)
    assert [i["metadata"]["name"] for i in decoded["items"]] == ["a"]
    assert decoded["omitted"] == [{"kind": "Pod", "bytes": SMALL.max_object + 1, "metadata": {
        "name": "big", "namespace": "default", "uid": big["metadata"]["uid"], "resourceVersion": "7"}}]
    [part] = change_bodies(PODS, [WatchEvent(type="MODIFIED", object=big),
                                  WatchEvent(type="DELETED", object=big)],
                           resource_version="8", after="6", limits=SMALL)
    modified, deleted = orjson.loads(part.data)["events"]
    assert modified["omitted"]["bytes"] == SMALL.max_object + 1 and "object" not in modified
    identity = decoded["omitted"][0]["metadata"]
    assert deleted["object"] == {"apiVersion": "v1", "kind": "Pod", "metadata": identity}


def test_a_split_batch_chains_checkpoints_that_resume_where_each_part_ends() -> None:
    changes = [WatchEvent(type="MODIFIED", object=_sized("a", 10 + i, 15 * 1024)) for i in range(9)]
    parts = change_bodies(PODS, changes, resource_version="30", after="9", limits=SMALL)
    assert len(parts) >= 3 and all(len(p.data) <= SMALL.max_body for p in parts)
    assert parts[0].after == "9" and parts[-1].resource_version == "30"
    for before, part in itertools.pairwise(parts):
        assert part.after == before.resource_version
    for part in parts[:-1]:
        events = orjson.loads(part.data)["events"]
        assert part.resource_version == events[-1]["object"]["metadata"]["resourceVersion"]
    sent = [e["object"]["metadata"]["resourceVersion"] for p in parts for e in orjson.loads(p.data)["events"]]
    assert sent == [str(10 + i) for i in range(9)]


def test_a_composite_checkpoint_moves_each_namespace() -> None:
    after = orjson.dumps({"namespaces": {"a": "1", "b": "2"}}).decode()
    final = orjson.dumps({"namespaces": {"a": "20", "b": "21"}}).decode()
    changes = [WatchEvent(type="MODIFIED", object=_sized(f"o{i}", 10 + i, 15 * 1024, namespace="ab"[i % 2]))
               for i in range(9)]
    parts = change_bodies(PODS, changes, resource_version=final, after=after, limits=SMALL)
    assert len(parts) >= 3 and parts[-1].resource_version == final
    first = orjson.loads(parts[0].resource_version)["namespaces"]
    events = orjson.loads(parts[0].data)["events"]
    last = {e["object"]["metadata"]["namespace"]: e["object"]["metadata"]["resourceVersion"] for e in events}
    assert first == {"a": last.get("a", "1"), "b": last.get("b", "2")}


def test_a_batch_is_not_split_where_its_checkpoint_would_not_move() -> None:
    same = [WatchEvent(type="MODIFIED", object=_sized(f"o{i}", 5, 15 * 1024)) for i in range(9)]
    [part] = change_bodies(PODS, same, resource_version="5", after="4", limits=SMALL)
    assert part.after == "4" and part.resource_version == "5"
