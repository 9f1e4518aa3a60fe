"""Bad input. An object the store cannot take is skipped: the rest of its batch or page is
applied, the type's last error names it and its skipped counter counts it, and the type goes
on syncing. A malformed request (no known event type, a page naming an object twice) is
refused whole and nothing of it is written."""

from __future__ import annotations

import random
import re
import string
import threading
from typing import Any

import asyncpg
import pytest

from kube.resources import ResourceType
from syncer.ingest import Store
from syncer.validate import MAX_CLUSTER, MAX_INDEX_ENTRY, POD_REPORT_OTHERS, BadInput, decode_json
from tests.factories import NODES, PODS, SECRETS, bookmark, event, pod


def _without(obj: dict[str, Any], *path: str) -> dict[str, Any]:
    target = obj
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return obj


def noise(n: int, *, seed: int = 0) -> str:
    """Random letters and digits: PostgreSQL cannot compress them to fit an index entry, as it
    would a long run of one letter."""
    return "".join(random.Random(f"{n}-{seed}").choices(string.ascii_letters + string.digits, k=n))


def wide(n: int, *, seed: int = 0) -> str:
    """``n`` random characters of four UTF-8 bytes each: the most bytes ``n`` characters take."""
    rng = random.Random(f"wide-{n}-{seed}")
    return "".join(chr(rng.randrange(0x10000, 0x110000)) for _ in range(n))


def _on_node(obj: dict[str, Any], node: Any) -> dict[str, Any]:
    obj["spec"]["nodeName"] = node
    return obj


BAD = {
    "no kind": (_without(pod("bad", 2), "kind"), "item 1 (default/bad): kind is missing"),
    "no name": (_without(pod("bad", 2), "metadata", "name"), "item 1: metadata.name is missing"),
    "no uid": (_without(pod("bad", 2), "metadata", "uid"), "item 1 (default/bad): metadata.uid is missing"),
    "wrong kind": ({**pod("bad", 2), "kind": "Deployment"}, "kind 'Deployment' does not belong in pods"),
    "name not a string": (pod("bad", 2, metadata={"name": 7}), "metadata.name must be a string"),
    "labels not strings": (pod("bad", 2, labels={"a": 1}), "metadata.labels must map strings"),  # type: ignore[dict-item]
    "object not a mapping": ("just a string", "item 1: an object must be a JSON object"),
    "too large": (pod("bad", 2, data="x" * (3 * 1024 * 1024)), "over the 3145728 byte limit"),
    "bad time": (pod("bad", 2, metadata={"creationTimestamp": "yesterday"}), "not an RFC 3339 time"),
    # Kubernetes' own limits: a longer name would also pass PostgreSQL's btree key limit.
    "name too long": (pod("n" * 254, 2), "metadata.name is 254 characters, over the limit of 253"),
    "name with a slash": (pod("a/b", 2), "metadata.name 'a/b' is not a name Kubernetes allows"),
    "namespace not a label": (pod("bad", 2, namespace="Not_A_Label"), "metadata.namespace 'Not_A_Label'"),
    "uid too long": (pod("bad", 2, uid="u" * 129), "metadata.uid is 129 characters, over the limit of 128"),
    "version too long": (pod("bad", "7" * 129), "metadata.resourceVersion is 129 characters"),
    "too many labels": (pod("bad", 2, labels={f"k{i}": "v" for i in range(257)}), "257 labels, over"),
    "label value too long": (pod("bad", 2, labels={"a": "v" * 64}), "value of 64 characters, over the limit"),
    "label key too long": (pod("bad", 2, labels={"k" * 64: "v"}), "is not a Kubernetes label key"),
    "label prefix too long": (pod("bad", 2, labels={"p" * 254 + "/k": "v"}), "is not a Kubernetes label key"),
    "owner uid too long": (pod("bad", 2, metadata={"ownerReferences": [
        {"uid": "o" * 129, "controller": True}]}), "the controller's uid is 129 characters"),
    "NUL in a name": (pod("a\x00b", 2), "metadata.name contains U+0000"),
    # What the store indexes of an object (syncer.migrations): over PostgreSQL's limit of a
    # btree entry, one such object would refuse its whole batch.
    "phase too long": (pod("bad", 2, phase=noise(6400)), "status.phase takes more than 1024 bytes"),
    "phase an object too long": (pod("bad", 2, phase={f"k{i}": noise(100, seed=i) for i in range(150)}),  # type: ignore[arg-type]
                                 "status.phase takes more than 1024 bytes"),
    "node name too long": (_on_node(pod("bad", 2), noise(6400)), "spec.nodeName takes more than 1024 bytes"),
    "app label too long": (pod("bad", 2, labels={"app": noise(6400)}), "label 'app' has a value of 6400"),
    "app name label too long": (pod("bad", 2, labels={"app.kubernetes.io/name": noise(6400)}),
                                "label 'app.kubernetes.io/name' has a value of 6400"),
}


async def _state(pool: asyncpg.Pool) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT checkpoint, skipped, last_error, object_count FROM sync_state")
    assert row is not None
    return row


async def _nothing_written(pool: asyncpg.Pool) -> None:
    assert await pool.fetchval("SELECT count(*) FROM resources") == 0
    assert await pool.fetchval("SELECT count(*) FROM change_log") == 0
    assert await pool.fetchval("SELECT count(*) FROM sync_state WHERE checkpoint IS NOT NULL") == 0


@pytest.mark.parametrize("case", sorted(BAD))
async def test_bad_object_in_a_batch_is_skipped(case: str, store: Store, pool: asyncpg.Pool) -> None:
    bad, message = BAD[case]
    result = await store.apply_batch(cluster="c1", rtype=PODS, resource_version="5",
                                     events=[event("ADDED", pod("good", 1)), event("ADDED", bad)])
    assert (result.applied, result.skipped, result.checkpoint) == (1, 1, "5")
    assert await pool.fetchval("SELECT array_agg(name) FROM resources") == ["good"]
    state = await _state(pool)
    assert (state["checkpoint"], state["skipped"], state["object_count"]) == ("5", 1, 1)
    assert re.search(re.escape(message.replace("\x00", "\ufffd")), state["last_error"]), state["last_error"]
    assert state["last_error"].startswith("skipped item 1")
    again = await store.apply_batch(cluster="c1", rtype=PODS, resource_version="5",
                                    events=[event("ADDED", pod("good", 1)), event("ADDED", bad)])
    assert again.replayed and (await _state(pool))["skipped"] == 1, "a replay changes nothing"


@pytest.mark.parametrize("case", sorted(BAD))
async def test_bad_object_in_a_page_is_skipped_and_counted_as_seen(
        case: str, store: Store, pool: asyncpg.Pool) -> None:
    bad, message = BAD[case]
    async with store.snapshot(cluster="c1", rtype=PODS) as snap:
        page = await snap.add([pod("good", 1), bad])
        assert (page.accepted, page.skipped) == (2, 1)
        replay = await store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=snap.snapshot_id,
                                           items=[pod("good", 1), bad])
        assert replay.accepted == 2
        result = await snap.end("9")  # the lister saw 2 objects: the count adds up
    assert result.checkpoint == "9"
    assert await pool.fetchval("SELECT array_agg(name) FROM resources") == ["good"]
    state = await _state(pool)
    assert (state["checkpoint"], state["skipped"]) == ("9", 1)
    assert re.search(re.escape(message.replace("\x00", "\ufffd")), state["last_error"]), state["last_error"]


async def test_skipped_object_keeps_its_stored_version(store: Store, pool: asyncpg.Pool) -> None:
    """An object that was fine and is now refused is not deleted as if it were gone."""
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("a", 1)),
                                                              event("ADDED", pod("b", 2))])
    async with store.snapshot(cluster="c1", rtype=PODS) as snap:
        await snap.add([pod("a", 3, labels={"grown": "x" * 100})])
        result = await snap.end("4")
    assert result.deleted == 1, "b is gone"
    assert await pool.fetchval("SELECT resource_version FROM resources WHERE name = 'a'") == "1"
    state = await _state(pool)
    assert state["skipped"] == 1 and "item 0 (default/a)" in state["last_error"]


async def test_skips_are_reported_until_a_snapshot_has_none(store: Store, pool: asyncpg.Pool) -> None:
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("a", 1, uid="u" * 200))])
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("b", 2)), bookmark(3)])
    assert (await _state(pool))["last_error"], "a later good batch does not hide the skipped object"
    async with store.snapshot(cluster="c1", rtype=PODS) as snap:
        await snap.add([pod("b", 2)])
        await snap.end("4")
    state = await _state(pool)
    assert (state["skipped"], state["last_error"]) == (0, None)


async def test_unnamed_objects_skipped_in_a_page_still_count(store: Store, pool: asyncpg.Pool) -> None:
    nameless = [_without(pod(f"x{i}", i), "metadata", "name") for i in range(3)]
    async with store.snapshot(cluster="c1", rtype=PODS) as snap:
        await snap.add([pod("a", 1), *nameless])
        await snap.add([pod("b", 2), nameless[0]])
        await snap.end("5")
    assert (await _state(pool))["skipped"] == 4


async def test_deletion_needs_only_the_identity(store: Store, pool: asyncpg.Pool) -> None:
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("a", 1))])
    huge = pod("a", 2, data="x" * (3 * 1024 * 1024), labels={"a": "v" * 100})
    result = await store.apply_batch(cluster="c1", rtype=PODS, events=[event("DELETED", huge)])
    assert (result.applied, result.skipped) == (1, 0)
    assert await pool.fetchval("SELECT count(*) FROM resources") == 0


async def test_omitted_objects_are_skipped_and_counted(store: Store, pool: asyncpg.Pool) -> None:
    stand_in = {"kind": "Pod", "metadata": {"name": "big", "namespace": "default", "uid": "u",
                                            "resourceVersion": "3"}, "bytes": 5_000_000}
    snapshot_id = await store.snapshot_start(cluster="c1", rtype=PODS)
    page = await store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=snapshot_id,
                                     items=[pod("a", 1)], omitted=[stand_in])
    assert (page.accepted, page.skipped) == (2, 1)
    await store.snapshot_end(cluster="c1", rtype=PODS, snapshot_id=snapshot_id, resource_version="4",
                             count=2)
    assert "item 1 (default/big): object is 5000000 bytes" in (await _state(pool))["last_error"]
    result = await store.apply_batch(cluster="c1", rtype=PODS, resource_version="6",
                                     events=[{"type": "MODIFIED", "omitted": stand_in}])
    assert (result.applied, result.skipped) == (0, 1)


async def test_secrets_are_pruned_by_their_type_not_their_kind(store: Store, pool: asyncpg.Pool) -> None:
    """A sender that leaves out apiVersion (or writes another) must not get Secret data in."""
    for name, api_version in [("no-version", None), ("odd-version", "v2")]:
        secret: dict[str, Any] = {"kind": "Secret", "data": {"password": "aHVudGVyMg=="},
                                  "stringData": {"p": "x"}, "type": "Opaque",
                                  "metadata": {"name": name, "namespace": "default", "uid": name,
                                               "resourceVersion": "2"}}
        if api_version:
            secret["apiVersion"] = api_version
        await store.apply_batch(cluster="c1", rtype=SECRETS, events=[event("ADDED", secret)])
        async with store.snapshot(cluster="c2", rtype=SECRETS) as snap:
            await snap.add([secret])
            await snap.end("3")
    for row in await pool.fetch("SELECT object FROM resources"):
        assert "data" not in row["object"] and "stringData" not in row["object"], row["object"]
        assert row["object"]["type"] == "Opaque"


async def test_cluster_scoped_names_are_not_namespaced(store: Store, pool: asyncpg.Pool) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "n-1",
                                                              "resourceVersion": "5", "namespace": "x_y"}}
    result = await store.apply_batch(cluster="c1", rtype=NODES, events=[event("ADDED", node)])
    assert result.skipped == 0 and await pool.fetchval("SELECT namespace FROM resources") == ""


async def test_unknown_event_type_refuses_the_batch(store: Store, pool: asyncpg.Pool) -> None:
    with pytest.raises(BadInput, match="item 0: unknown event type 'UPSERTED'"):
        await store.apply_batch(cluster="c1", rtype=PODS, events=[event("UPSERTED", pod("a", 1))])
    await _nothing_written(pool)


async def test_event_that_is_not_an_object_refuses_the_batch(store: Store, pool: asyncpg.Pool) -> None:
    with pytest.raises(BadInput, match="item 1: an event must be a JSON object"):
        await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("a", 1)), "ADDED"])
    await _nothing_written(pool)


async def test_bookmark_without_a_version_refuses_the_batch(store: Store, pool: asyncpg.Pool) -> None:
    with pytest.raises(BadInput, match=r"item 1: BOOKMARK without metadata\.resourceVersion"):
        await store.apply_batch(cluster="c1", rtype=PODS,
                                events=[event("ADDED", pod("a", 1)), {"type": "BOOKMARK", "object": {}}])
    await _nothing_written(pool)


async def test_duplicate_in_page_refuses_it(store: Store, pool: asyncpg.Pool) -> None:
    snapshot_id = await store.snapshot_start(cluster="c1", rtype=PODS)
    with pytest.raises(BadInput, match=r"item 1 \(default/a\): appears twice"):
        await store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=snapshot_id,
                                  items=[pod("a", 1), pod("a", 2)])
    with pytest.raises(BadInput, match=r"item 1 \(default/a\): appears twice"):
        await store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=snapshot_id,
                                  items=[pod("a", 1), pod("a", 2, uid="u" * 200)])
    await _nothing_written(pool)


def test_invalid_json_names_position() -> None:
    with pytest.raises(BadInput, match=r"batch: invalid JSON: .*char 13"):
        decode_json(b'{"events": [{]}', what="batch")


async def test_nul_in_a_value_is_replaced_not_refused(store: Store, pool: asyncpg.Pool) -> None:
    odd = pod("odd", 1, labels={"app": "a\x00b"}, metadata={"annotations": {"note": "x\x00y"}})
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", odd)])
    row = await pool.fetchrow("SELECT labels, object FROM resources WHERE name = 'odd'")
    assert row["labels"] == {"app": "a\ufffdb"}
    assert row["object"]["metadata"]["annotations"] == {"note": "x\ufffdy"}
    literal = pod("literal", 2, metadata={"annotations": {"text": "\\u0000 stays as written"}})
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", literal)])
    stored = await pool.fetchval("SELECT object FROM resources WHERE name = 'literal'")
    assert stored["metadata"]["annotations"]["text"] == "\\u0000 stays as written"


class _Watched(dict[str, Any]):
    """An object that notes the threads reading it."""

    threads: set[str]

    def get(self, key: str, default: Any = None) -> Any:
        self.threads.add(threading.current_thread().name)
        return super().get(key, default)


async def test_validation_runs_off_the_event_loop(store: Store) -> None:
    watched = [_Watched(pod(f"w{i}", i)) for i in range(2)]
    for obj in watched:
        obj.threads = set()
    await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", watched[0])])
    async with store.snapshot(cluster="c1", rtype=PODS) as snap:
        await snap.add([watched[1]])
        await snap.end("5")
    loop_thread = threading.current_thread().name
    for obj in watched:
        assert obj.threads and loop_thread not in obj.threads, obj.threads


# The widest identity there can be: every part at its limit in four-byte characters (the
# namespace and the cluster's name are DNS labels).
WIDE = ResourceType(group=wide(253), version=wide(63), resource=wide(63), kind="Widget", namespaced=True)
WIDE_CLUSTER, WIDE_NAMESPACE = "c" * MAX_CLUSTER, "n" * 63
WIDE_IDENTITY = sum(len(part.encode()) for part in (WIDE.group, WIDE.resource, WIDE_NAMESPACE,
                                                    wide(253), WIDE_CLUSTER))


def widget(rv: int, *, node: Any = "node-1", phase: Any = "Ready") -> dict[str, Any]:
    """A widget with the widest name (each a name of its own) and the widest app labels."""
    return {"apiVersion": f"{WIDE.group}/{WIDE.version}", "kind": "Widget",
            "metadata": {"name": wide(253, seed=rv), "namespace": WIDE_NAMESPACE, "uid": f"u{rv}",
                         "resourceVersion": str(rv),
                         "labels": {"app": wide(63, seed=rv), "app.kubernetes.io/name": wide(63, seed=-rv)}},
            "spec": {"nodeName": node}, "status": {"phase": phase}}


async def test_the_widest_entries_validation_allows_are_stored(store: Store, pool: asyncpg.Pool) -> None:
    room = MAX_INDEX_ENTRY - WIDE_IDENTITY
    objects = [widget(1, node=noise(room, seed=1), phase=noise(room, seed=2)),
               widget(2, node={"rack": [1.5, 2.5e-7, None, True]}, phase=None),
               widget(3, phase=noise(room + 1))]
    result = await store.apply_batch(cluster=WIDE_CLUSTER, rtype=WIDE,
                                     events=[event("ADDED", obj) for obj in objects])
    assert (result.applied, result.skipped) == (2, 1)
    assert f"status.phase ({room + 1} bytes) with the type" in (await _state(pool))["last_error"]
    nodes = await pool.fetch("SELECT object #>> '{spec,nodeName}' FROM resources ORDER BY uid")
    assert [r[0] for r in nodes] == [noise(room, seed=1), '{"rack": [1.5, 0.00000025, null, true]}']


async def test_a_field_too_wide_for_its_index_entry_is_skipped(store: Store, pool: asyncpg.Pool) -> None:
    """A phase well under the limit of a field, with an identity that leaves it no room."""
    events = [event("ADDED", widget(1)), event("ADDED", widget(2, phase=noise(1000)))]
    result = await store.apply_batch(cluster=WIDE_CLUSTER, rtype=WIDE, resource_version="2", events=events)
    assert (result.applied, result.skipped, result.checkpoint) == (1, 1, "2")
    assert await pool.fetchval("SELECT array_agg(name) FROM resources") == [wide(253, seed=1)]
    assert "item 1" in (await _state(pool))["last_error"]


def _pod_with_images(name: str, rv: int, images: list[str]) -> dict[str, Any]:
    obj = pod(name, rv, namespace=WIDE_NAMESPACE, phase=wide(64))
    obj["spec"]["containers"] = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return obj


def _images(lengths: tuple[int, ...], *, counted: int) -> list[str]:
    """Random images of these lengths, as many as kube_pod_images counts in ``counted`` bytes."""
    rng, images, total = random.Random(str(lengths)), list[str](), 0
    while total + max(lengths) + 4 <= counted:
        image = noise(rng.choice(lengths), seed=len(images))
        images.append(image)
        total += len(image) + 4
    return images


async def test_a_pod_whose_images_overfill_its_report_entry_is_skipped(store: Store,
                                                                        pool: asyncpg.Pool) -> None:
    """Counted as kube_pod_images counts them (4 bytes an image) they are under its 2000 bytes,
    but as an array (each image padded to 4 bytes) they are more than the report index holds."""
    # Five characters: 9 bytes counted, 12 stored. As many as fit: 24 + 182 * 12 = 2208 bytes.
    fits = _images((5,), counted=9 * ((MAX_INDEX_ENTRY - POD_REPORT_OTHERS - 24) // 12))
    overfills = _images((5, 9, 13, 17), counted=2000)
    result = await store.apply_batch(cluster=WIDE_CLUSTER, rtype=PODS, resource_version="3", events=[
        event("ADDED", pod("plain", 1)), event("ADDED", _pod_with_images("fits", 2, fits)),
        event("ADDED", _pod_with_images("overfills", 3, overfills))])
    assert (result.applied, result.skipped, result.checkpoint) == (2, 1, "3")
    assert await pool.fetchval("SELECT array_agg(name ORDER BY name) FROM resources") == ["fits", "plain"]
    assert await pool.fetchval("SELECT pod_images FROM resources WHERE name = 'fits'") == sorted(fits)
    assert "item 2 (nnnnn" in (await _state(pool))["last_error"]
    assert "container images take" in (await _state(pool))["last_error"]
