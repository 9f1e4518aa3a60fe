"""Bad input refuses the whole batch, names the offending item, and writes nothing."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from syncer.ingest import Store
from syncer.validate import BadInput, decode_json
from tests.factories import PODS, event, pod


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
}


async def _nothing_written(pool: asyncpg.Pool) -> None:
    assert await pool.fetchval("SELECT count(*) FROM resources") == 0
    assert await pool.fetchval("SELECT count(*) FROM change_log") == 0
    assert await pool.fetchval("SELECT count(*) FROM sync_state WHERE checkpoint IS NOT NULL") == 0


@pytest.mark.parametrize("case", sorted(BAD))
async def test_bad_event_refuses_batch(case: str, store: Store, pool: asyncpg.Pool) -> None:
    bad, message = BAD[case]
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        await store.apply_batch(cluster="c1", rtype=PODS,
                                events=[event("ADDED", pod("good", 1)), event("ADDED", bad)])
    await _nothing_written(pool)


@pytest.mark.parametrize("case", sorted(BAD))
async def test_bad_snapshot_item_refuses_page(case: str, store: Store, pool: asyncpg.Pool) -> None:
    bad, _ = BAD[case]
    snapshot_id = await store.snapshot_start(cluster="c1", rtype=PODS)
    with pytest.raises(BadInput, match="item 1"):
        await store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=snapshot_id,
                                  items=[pod("good", 1), bad])
    await _nothing_written(pool)


async def test_unknown_event_type(store: Store, pool: asyncpg.Pool) -> None:
    with pytest.raises(BadInput, match="item 0: unknown event type 'UPSERTED'"):
        await store.apply_batch(cluster="c1", rtype=PODS, events=[event("UPSERTED", pod("a", 1))])
    await _nothing_written(pool)


async def test_duplicate_in_page(store: Store, pool: asyncpg.Pool) -> None:
    snapshot_id = await store.snapshot_start(cluster="c1", rtype=PODS)
    with pytest.raises(BadInput, match=r"item 1 \(default/a\): appears twice"):
        await store.snapshot_page(cluster="c1", rtype=PODS, snapshot_id=snapshot_id,
                                  items=[pod("a", 1), pod("a", 2)])
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


async def test_nul_in_a_name_is_refused(store: Store, pool: asyncpg.Pool) -> None:
    with pytest.raises(BadInput, match=r"item 0 \(default/a\x00b\): metadata.name contains U\+0000"):
        await store.apply_batch(cluster="c1", rtype=PODS, events=[event("ADDED", pod("a\x00b", 1))])
    await _nothing_written(pool)
