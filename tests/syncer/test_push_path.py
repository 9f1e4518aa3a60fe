"""Large objects the whole way: agent's HttpSink -> ingest listener -> store, over real HTTP."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import pytest

from agent import packing, protocol
from agent.events import WatchEvent
from agent.push import HttpSink
from agent.sink import SinkUnavailable
from tests.factories import PODS, pod
from tests.syncer.conftest import Ingest

MIB = 1024 * 1024


def _sized(name: str, rv: int, size: int) -> dict[str, Any]:
    obj = pod(name, rv)
    obj["data"] = ""
    obj["data"] = "x" * (size - len(orjson.dumps(obj)))
    assert len(orjson.dumps(obj)) == size
    return obj


async def _sizes(pool: asyncpg.Pool) -> dict[str, tuple[str, int]]:
    rows = await pool.fetch("SELECT name, resource_version, length(object::text) AS n FROM resources")
    return {r["name"]: (r["resource_version"], r["n"]) for r in rows}


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
async def test_objects_of_one_to_three_mib_are_stored(ingest: Ingest, pool: asyncpg.Pool,
                                                      compress: bool) -> None:
    token = await ingest.register_push("a")
    limit = protocol.MAX_OBJECT_BYTES
    page = [_sized("one", 1, MIB), _sized("two", 2, 2 * MIB), _sized("three", 3, limit),
            _sized("over", 4, limit + 1), _sized("huge", 4, 5 * MIB), pod("small", 5)]
    async with HttpSink(base_url=ingest.url, cluster="a", token=token, compress=compress) as sink:
        snapshot = await sink.snapshot_start(PODS)
        await sink.snapshot_page(PODS, snapshot, page)  # 6 MiB: more than one body
        await sink.snapshot_end(PODS, snapshot, resource_version="5", count=len(page))
        stored = await _sizes(pool)
        assert set(stored) == {"one", "two", "three", "small"}
        assert stored["three"][0] == "3" and stored["three"][1] >= limit - 1024
        await sink.changes(PODS, [WatchEvent(type="MODIFIED", object=_sized("one", 6, limit - 1)),
                                  WatchEvent(type="MODIFIED", object=_sized("three", 7, limit + 1)),
                                  WatchEvent(type="DELETED", object=_sized("two", 8, 2 * limit))],
                           resource_version="8", after="5")
        assert await sink.checkpoints() == {"pods": "8"}
    stored = await _sizes(pool)
    assert set(stored) == {"one", "three", "small"}
    assert stored["one"][0] == "6" and stored["three"][0] == "3", "the refused version leaves the stored one"
    state = await pool.fetchrow("SELECT skipped, last_error FROM sync_state")
    assert state["skipped"] == 3, "two in the snapshot, one since"
    assert state["last_error"] == (f"skipped item 1 (default/three): object is {limit + 1} bytes, over the"
                                   f" {limit} byte limit (not sent)")


class _LosesAnAnswer(HttpSink):
    """The answer to one request is lost after the syncer committed it."""

    lose: int = 0
    sent: int = 0

    async def _call(self, method: str, path: str, body: Any) -> dict[str, Any]:
        answer = await super()._call(method, path, body)
        self.sent += 1
        if self.sent == self.lose:
            raise SinkUnavailable("connection reset")
        return answer


async def test_a_split_batch_retried_after_a_lost_answer_goes_on(ingest: Ingest, pool: asyncpg.Pool) -> None:
    token = await ingest.register_push("a")
    small = packing.Limits(max_body=64 * 1024, max_items=1000, max_object=48 * 1024)
    changes = [WatchEvent(type="ADDED", object=_sized(f"p{i}", 10 + i, 30 * 1024)) for i in range(6)]
    async with _LosesAnAnswer(base_url=ingest.url, cluster="a", token=token, limits=small) as sink:
        await sink.changes(PODS, [], resource_version="9")
        sink.lose = 3  # the second part of the split batch: committed, its answer lost
        with pytest.raises(SinkUnavailable):
            await sink.changes(PODS, changes, resource_version="15", after="9")
        await sink.changes(PODS, changes, resource_version="15", after="9")  # the pipeline's retry
        assert sink.sent > 4, "the batch went as several bodies"
        assert await sink.checkpoints() == {"pods": "15"}
    assert await pool.fetchval("SELECT count(*) FROM resources") == 6
    assert await pool.fetchval("SELECT count(*) FROM change_log") == 6
