"""Bad input. An object the store cannot take is skipped: the rest of its batch or page is
applied, the type's last error names it and its skipped counter counts it, and the type goes
on syncing. A malformed request (no known event type, a page naming an object twice) is
refused whole and nothing of it is written."""

from __future__ import annotations

import re
import threading
from typing import Any

import asyncpg
import pytest

from syncer.ingest import Store
from syncer.validate import BadInput, decode_json
from tests.factories import NODES, PODS, SECRETS, bookmark, event, pod


def _without(obj: dict[str, Any], *path: str) -> dict[str, Any]:
    target = obj
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
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
