"""The ingest listener's bounds, over real HTTP: what a hostile or broken agent can make the
syncer spend before it is answered, and with which code."""

from __future__ import annotations

import asyncio
import gzip
import io
import resource
import zlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest

from agent import protocol
from agent.push import HttpSink
from syncer.admission import Limits
from tests.factories import PODS, event, pod
from tests.syncer.conftest import Ingest, serving

TYPE = protocol.type_to_dict(PODS)


def _changes(events: list[Any], rv: str = "1", **extra: Any) -> dict[str, Any]:
    return {"type": TYPE, "resourceVersion": rv, "events": events, **extra}


async def _post(ingest: Ingest, path: str, token: str | None, data: Any,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Any]:
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    if isinstance(data, dict):
        data = orjson.dumps(data)
    if isinstance(data, bytes):
        data = io.BytesIO(data)  # aiohttp warns that big raw bytes block the loop
    async with ingest.session.post(ingest.url + path, data=data, headers=all_headers) as resp:
        return resp.status, orjson.loads(await resp.read()), resp.headers


def _exactly(size: int) -> bytes:
    """A valid, empty batch padded to ``size`` bytes."""
    body = _changes([], pad="")
    body["pad"] = "x" * (size - len(orjson.dumps(body)))
    data = orjson.dumps(body)
    assert len(data) == size
    return data


CHANGES = "/ingest/v1/clusters/a/changes"


async def test_body_limit_is_413_just_over_and_fits_just_under(ingest: Ingest) -> None:
    token = await ingest.register_push("a")
    status, body, _ = await _post(ingest, CHANGES, token, _exactly(protocol.MAX_BODY_BYTES))
    assert status == 200, body
    status, body, _ = await _post(ingest, CHANGES, token, _exactly(protocol.MAX_BODY_BYTES + 1))
    assert (status, body["kind"], body["reason"]) == (413, "Status", "RequestEntityTooLarge")
    compressed = gzip.compress(_exactly(protocol.MAX_BODY_BYTES + 1))
    status, body, _ = await _post(ingest, CHANGES, token, compressed, {"Content-Encoding": "gzip"})
    assert (status, body["reason"]) == (413, "RequestEntityTooLarge")
    assert "after decompression" in body["message"]


def _bomb(megabytes: int) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip framing
    zeros = bytes(1024 * 1024)
    return b"".join(compressor.compress(zeros) for _ in range(megabytes)) + compressor.flush()


async def test_a_decompression_bomb_is_cut_off_while_it_decompresses(ingest: Ingest) -> None:
    """512 MiB of zeros in 2 MiB of gzip: refused long before it is all in memory."""
    token = await ingest.register_push("a")
    bomb = await asyncio.to_thread(_bomb, 512)
    assert len(bomb) < protocol.MAX_BODY_BYTES
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    status, body, _ = await _post(ingest, CHANGES, token, bomb, {"Content-Encoding": "gzip"})
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert (status, body["reason"]) == (413, "RequestEntityTooLarge")
    assert grown_mib < 128, f"peak memory grew by {grown_mib:.0f} MiB"


async def _trickle(started: asyncio.Event, release: asyncio.Event) -> AsyncIterator[bytes]:
    yield b'{"type": '
    started.set()
    await release.wait()
    yield orjson.dumps(TYPE) + b', "resourceVersion": "1", "events": []}'


async def test_a_body_that_trickles_in_is_cut_off_with_408(db_url: str) -> None:
    async with serving(db_url, limits=Limits(body_timeout=0.5)) as ingest:
        token = await ingest.register_push("a")
        started, release = asyncio.Event(), asyncio.Event()
        try:
            status, body, headers = await _post(ingest, CHANGES, token, _trickle(started, release))
        finally:
            release.set()
        assert (status, body["reason"]) == (408, "Timeout")
        assert headers.get("Connection", "").lower() == "close"


async def test_authentication_comes_before_the_body(db_url: str) -> None:
    """A caller without a valid token is answered before its body arrives, and takes no slot."""
    limits = Limits(body_timeout=3600, write_slots=1, per_cluster=1, cluster_wait=0.2, wait=0.2)
    async with serving(db_url, limits=limits) as ingest:
        token = await ingest.register_push("a")
        release = asyncio.Event()
        try:
            for wrong in ("nope", None):
                status, body, _ = await _post(ingest, CHANGES, wrong, _trickle(asyncio.Event(), release))
                assert (status, body["reason"]) == (401, "Unauthorized")
            status, body, _ = await _post(ingest, CHANGES, token, _changes([event("ADDED", pod("x", 1))]))
            assert status == 200, body
        finally:
            release.set()


async def test_a_slow_agent_holds_only_its_own_slots(db_url: str, pool: asyncpg.Pool) -> None:
    limits = Limits(body_timeout=3600, write_slots=1, per_cluster=1, cluster_wait=0.2, wait=0.2)
    async with serving(db_url, limits=limits) as ingest:
        slow, other = await ingest.register_push("a"), await ingest.register_push("b")
        started, release = asyncio.Event(), asyncio.Event()
        stuck = asyncio.create_task(_post(ingest, CHANGES, slow, _trickle(started, release)))
        try:
            await started.wait()
            await asyncio.sleep(0.3)  # the server holds the request, its body unfinished
            status, body, headers = await _post(ingest, CHANGES, slow, _changes([]))
            assert (status, body["reason"], headers["Retry-After"]) == (429, "TooManyRequests", "1")
            assert "cluster a has 1 requests in progress" in body["message"]
            status, body, _ = await _post(ingest, "/ingest/v1/clusters/b/changes", other,
                                          _changes([event("ADDED", pod("x", 1))]))
            assert status == 200, "another cluster is not held up by the slow body"
        finally:
            release.set()
            status, _, _ = await stuck
        assert status == 200
        assert await pool.fetchval("SELECT count(*) FROM resources WHERE cluster = 'b'") == 1


async def test_too_many_items_is_413_and_recorded(ingest: Ingest, pool: asyncpg.Pool) -> None:
    token = await ingest.register_push("a")
    many = [event("ADDED", pod(f"p{i}", i)) for i in range(protocol.MAX_ITEMS + 1)]
    status, body, _ = await _post(ingest, CHANGES, token, _changes(many))
    assert (status, body["reason"]) == (413, "RequestEntityTooLarge")
    assert "1001 items, over the limit of 1000" in body["message"]
    assert "request refused" in await pool.fetchval("SELECT last_error FROM sync_state")


async def test_bad_values_in_the_envelope(ingest: Ingest) -> None:
    token = await ingest.register_push("a")
    long_rv = "1" * (protocol.MAX_CHECKPOINT_BYTES + 1)
    status, body, _ = await _post(ingest, CHANGES, token, _changes([], rv=long_rv))
    assert (status, body["reason"]) == (422, "Invalid")
    long_kind = {**_changes([]), "type": {**TYPE, "kind": "K" * 64}}
    status, body, _ = await _post(ingest, CHANGES, token, long_kind)
    assert (status, body["reason"]) == (400, "BadRequest")
    status, body, _ = await _post(ingest, CHANGES, token, {**_changes([]), "events": {"not": "a list"}})
    assert (status, body["message"]) == (400, "events must be a list")


async def test_quotas_are_403_and_shown_where_the_operator_looks(ingest: Ingest, pool: asyncpg.Pool) -> None:
    token = await ingest.register_push("a", maxTypes=1, maxObjects=3)
    other = {**TYPE, "resource": "configmaps", "kind": "ConfigMap"}
    async with HttpSink(base_url=ingest.url, cluster="a", token=token) as sink:
        status, body, _ = await _post(ingest, CHANGES, token,
                                      _changes([event("ADDED", pod(f"p{i}", i)) for i in range(3)]))
        assert status == 200
        one_more = _changes([event("ADDED", pod("p9", 9))], rv="9")
        status, body, _ = await _post(ingest, CHANGES, token, one_more)
        assert (status, body["reason"]) == (403, "Forbidden")
        assert body["message"].startswith("exceeded quota: cluster a holds 3 objects")
        status, body, _ = await _post(ingest, CHANGES, token, {**_changes([]), "type": other})
        assert (status, body["reason"]) == (403, "Forbidden")
        assert "syncs 1 types, its limit; configmaps is not synced" in body["message"]
        assert await sink.checkpoints() == {"pods": "1"}
    _, overview = await ingest.admin("GET", "/admin/v1/clusters")
    [entry] = overview["clusters"]
    assert entry["errors"] == 2
    assert "exceeded quota" in entry["lastError"] and entry["lastError"].startswith("configmaps:")
    assert "exceeded quota" in entry["types"][0]["lastError"]
    status, body = await ingest.admin("POST", "/admin/v1/clusters",
                                      {"name": "b", "mode": "push", "settings": {"maxObjects": -1}})
    assert (status, body["reason"]) == (422, "Invalid")


async def test_the_admin_api_is_not_on_the_ingest_listener(ingest: Ingest) -> None:
    for method in ("GET", "POST", "DELETE"):
        path = "/admin/v1/clusters" + ("/a" if method == "DELETE" else "")
        async with ingest.session.request(method, ingest.url + path,
                                          headers={"Authorization": "Bearer admin-secret"}) as resp:
            body = orjson.loads(await resp.read())
        assert (resp.status, body["kind"], body["reason"]) == (404, "Status", "NotFound")
        assert "--admin-listen" in body["message"]
    status, _ = await ingest.admin("GET", "/admin/v1/clusters")
    assert status == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_both_listeners_answer_health(ingest: Ingest, path: str) -> None:
    for base in (ingest.url, ingest.admin_url):
        async with ingest.session.get(base + path) as resp:
            assert resp.status == 200


async def test_compressed_bodies_are_checked(ingest: Ingest) -> None:
    token = await ingest.register_push("a")
    plain = orjson.dumps(_changes([]))
    cases = [(b"not gzip at all", "gzip", 400), (gzip.compress(plain)[:-9], "gzip", 400),
             (gzip.compress(plain) * 2, "gzip", 400), (plain, "br", 415),
             (zlib.compress(plain), "deflate", 200), (gzip.compress(plain), "gzip", 200)]
    for data, encoding, code in cases:
        status, body, _ = await _post(ingest, CHANGES, token, data, {"Content-Encoding": encoding})
        assert status == code, (encoding, body)
