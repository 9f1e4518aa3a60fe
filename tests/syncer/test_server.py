"""The ingest listener over real HTTP: the agent's HttpSink against the real server."""

from __future__ import annotations

import gzip

import asyncpg
import orjson
import pytest

from agent.events import WatchEvent
from agent.push import HttpSink, _is_loopback
from agent.sink import SinkBusy, SinkNeedsSnapshot, SinkUnavailable
from syncer.server import SLOTS
from tests.factories import PODS, pod
from tests.syncer.conftest import Ingest


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
async def test_push_flow(ingest: Ingest, pool: asyncpg.Pool, compress: bool) -> None:
    token = await ingest.register_push("edge-1")
    async with HttpSink(base_url=ingest.url, cluster="edge-1", token=token, compress=compress) as sink:
        assert await sink.checkpoints() == {}
        snapshot = await sink.snapshot_start(PODS)
        await sink.snapshot_page(PODS, snapshot, [pod("a", 1), pod("b", 2)])
        await sink.snapshot_end(PODS, snapshot, resource_version="2", count=2)
        await sink.changes(PODS, [WatchEvent(type="DELETED", object=pod("a", 3))], resource_version="3")
        await sink.changes(PODS, [], resource_version="7")  # a bookmark
        assert await sink.checkpoints() == {"pods": "7"}
        names = [r["name"] for r in await pool.fetch("SELECT name FROM resources WHERE cluster = 'edge-1'")]
        assert names == ["b"]
        await sink.remove_type(PODS)
    assert await pool.fetchval("SELECT count(*) FROM resources") == 0
    seen = await pool.fetchval("SELECT healthy AND last_seen_at IS NOT NULL FROM clusters")
    assert seen is True


async def _status(ingest: Ingest, path: str, token: str | None, body: bytes = b"{}",
                  headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    async with ingest.session.post(ingest.url + path, data=body, headers=all_headers) as resp:
        return resp.status, orjson.loads(await resp.read())


async def test_authentication_fails_alike_whatever_is_wrong(ingest: Ingest) -> None:
    """No token, a wrong one, another cluster's, an unknown cluster: one answer, which does
    not tell whether the cluster exists."""
    token_a = await ingest.register_push("a")
    await ingest.register_push("b")
    answers = []
    for cluster, token in [("b", None), ("b", "nope"), ("b", token_a), ("ghost", token_a), ("ghost", "nope")]:
        status, body = await _status(ingest, f"/ingest/v1/clusters/{cluster}/snapshots", token)
        assert (status, body["kind"], body["reason"], body["code"]) == (401, "Status", "Unauthorized", 401)
        answers.append(body["message"])
    assert len(set(answers[1:])) == 1, answers


async def test_malformed_request_is_400_and_an_unstorable_object_is_skipped(
        ingest: Ingest, pool: asyncpg.Pool) -> None:
    token = await ingest.register_push("a")
    path = "/ingest/v1/clusters/a/changes"
    status, body = await _status(ingest, path, token, body=b'{"type": {"group": ""')
    assert status == 400 and "invalid JSON" in str(body["message"])
    no_uid = pod("bad", 2)
    del no_uid["metadata"]["uid"]
    batch = {"type": {"group": "", "version": "v1", "resource": "pods", "kind": "Pod", "namespaced": True},
             "resourceVersion": "2", "events": [{"type": "ADDED", "object": pod("ok", 1)},
                                                {"type": "ADDED", "object": no_uid}]}
    status, body = await _status(ingest, path, token, body=gzip.compress(orjson.dumps(batch)),
                                 headers={"Content-Encoding": "gzip"})
    assert (status, body["applied"], body["skipped"]) == (200, 1, 1)
    assert await pool.fetchval("SELECT name FROM resources") == "ok"
    assert await pool.fetchval("SELECT last_error FROM sync_state") == \
        "skipped item 1 (default/bad): metadata.uid is missing"
    async with HttpSink(base_url=ingest.url, cluster="a", token=token) as sink:
        await sink.changes(PODS, [WatchEvent(type="ADDED", object=no_uid)], resource_version="9")
        assert await sink.checkpoints() == {"pods": "9"}, "the type goes on syncing"


async def test_lost_snapshot_is_409(ingest: Ingest) -> None:
    token = await ingest.register_push("a")
    async with HttpSink(base_url=ingest.url, cluster="a", token=token) as sink:
        with pytest.raises(SinkNeedsSnapshot):
            await sink.snapshot_page(PODS, "12345", [pod("a", 1)])
        first = await sink.snapshot_start(PODS)
        await sink.snapshot_start(PODS)  # supersedes the first
        with pytest.raises(SinkNeedsSnapshot):
            await sink.snapshot_end(PODS, first, resource_version="1", count=0)


async def test_backpressure_is_429_with_retry_after(ingest: Ingest) -> None:
    token = await ingest.register_push("a")
    slots = ingest.app[SLOTS]
    for _ in range(slots.limits.write_slots):  # every write slot busy: the store is behind
        await slots.total.acquire()
    try:
        async with HttpSink(base_url=ingest.url, cluster="a", token=token) as sink:
            with pytest.raises(SinkBusy) as info:
                await sink.snapshot_start(PODS)
        assert info.value.retry_after == 1.0
    finally:
        for _ in range(slots.limits.write_slots):
            slots.total.release()


async def test_unreachable_syncer_is_unavailable() -> None:
    async with HttpSink(base_url="http://127.0.0.1:9", cluster="a", token="t") as sink:
        with pytest.raises(SinkUnavailable):
            await sink.checkpoints()


async def test_registry_admin(ingest: Ingest, pool: asyncpg.Pool) -> None:
    assert (await ingest.admin("GET", "/admin/v1/clusters", token="wrong"))[0] == 401
    status, body = await ingest.admin("POST", "/admin/v1/clusters", {"name": "Bad_Name", "mode": "push"})
    assert (status, body["reason"]) == (422, "Invalid")
    status, body = await ingest.admin("POST", "/admin/v1/clusters", {"name": "p", "mode": "pull"})
    assert (status, body["message"]) == (422, "a pull cluster needs a kubeconfig")
    token = await ingest.register_push("a")
    status, body = await ingest.admin("POST", "/admin/v1/clusters", {"name": "a", "mode": "push"})
    assert (status, body["reason"]) == (409, "AlreadyExists")
    stored = await pool.fetchval("SELECT token_hash FROM clusters WHERE name = 'a'")
    assert token not in stored, "tokens are stored hashed"
    async with HttpSink(base_url=ingest.url, cluster="a", token=token) as sink:
        await sink.changes(PODS, [WatchEvent(type="ADDED", object=pod("x", 1))], resource_version="1")
    status, body = await ingest.admin("GET", "/admin/v1/clusters")
    [entry] = body["clusters"]
    assert (entry["name"], entry["mode"], entry["healthy"], entry["stale"], entry["objects"]) == \
        ("a", "push", True, False, 1)
    assert entry["types"][0]["type"] == "pods" and entry["types"][0]["checkpoint"] == "1"
    status, body = await ingest.admin("DELETE", "/admin/v1/clusters/a")
    assert (status, body["deleted"]) == (200, 1)
    assert await pool.fetchval("SELECT count(*) FROM resources") == 0
    assert (await ingest.admin("DELETE", "/admin/v1/clusters/a"))[0] == 404
    async with HttpSink(base_url=ingest.url, cluster="a", token=token) as sink:
        with pytest.raises(SinkUnavailable):  # 401: the cluster is gone
            await sink.checkpoints()


async def test_stale_batch_is_409_and_the_agent_relists(ingest: Ingest, pool: asyncpg.Pool) -> None:
    token = await ingest.register_push("a")
    async with HttpSink(base_url=ingest.url, cluster="a", token=token) as sink:
        await sink.changes(PODS, [WatchEvent(type="ADDED", object=pod("x", 1))], resource_version="1")
        await sink.changes(PODS, [WatchEvent(type="MODIFIED", object=pod("x", 2))], resource_version="2",
                           after="1")
        with pytest.raises(SinkNeedsSnapshot, match="CheckpointMismatch"):
            await sink.changes(PODS, [WatchEvent(type="DELETED", object=pod("x", 3))], resource_version="3",
                               after="1")
    assert await pool.fetchval("SELECT resource_version FROM resources") == "2"


async def test_odd_tokens_are_401_not_500(ingest: Ingest) -> None:
    await ingest.register_push("a")
    for token in ("t\u00e9st", "\udcff"):
        async with ingest.session.get(
                ingest.url + "/ingest/v1/clusters/a/checkpoints",
                headers={"Authorization": f"Bearer {token}".encode("utf-8", "surrogateescape").decode(
                    "latin-1")}) as resp:
            assert resp.status == 401, await resp.text()
    status, _ = await ingest.admin("GET", "/admin/v1/clusters", token="t\u00e9st".encode().decode("latin-1"))
    assert status == 401


def test_loopback_syncers_get_plain_bodies() -> None:
    assert _is_loopback("http://127.0.0.1:8081") and _is_loopback("http://localhost:1")
    assert _is_loopback("http://[::1]:8081")
    assert not _is_loopback("https://kubepedia.example:8081")
    assert not _is_loopback("http://10.0.0.7:8081")
