"""The event loop keeps running while a large page is decoded and validated.

Pull mode's informers run on the syncer's event loop beside every agent's requests; neither
a page they hand to the store (``syncer.sink.StoreSink``) nor a large body an agent pushes
may stop that loop while it is decoded and validated (``syncer.decoding``). Measured against
itself, not a clock: the lag the loop shows while a page is stored must be well under the
lag the same page decoded on the loop causes."""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import Awaitable, Callable

import asyncpg
import orjson

from agent import protocol
from agent.events import RawObject, as_dict
from kubesim import objects
from syncer.ingest import Store
from syncer.metrics import LoopLag
from syncer.sink import StoreSink
from tests.factories import PODS
from tests.syncer.conftest import Ingest

OBJECTS = 1000  # kubesim's pods, about 4 MB of JSON
PUSHED = 900  # as many as one request body may carry (4 MiB)


def _pod(rng: random.Random, index: int) -> RawObject:
    obj = objects.make_pod(rng, "default", f"p-{index}")
    obj["metadata"].update(uid=f"uid-{index}", resourceVersion=str(index + 1))  # as a server sets them
    return RawObject.encode(obj)


def _page() -> list[RawObject]:
    rng = random.Random(1)
    return [_pod(rng, i) for i in range(OBJECTS)]


async def _lag_while(work: Callable[[], Awaitable[object]]) -> float:
    """The longest the event loop was held up while ``work`` ran (a 1 ms wake-up)."""
    lag = LoopLag(interval=0.001)
    monitor = asyncio.create_task(lag.run())
    try:
        await asyncio.sleep(0.05)
        await work()
        await asyncio.sleep(0.01)  # the wake-up that was held up must come before it is cancelled
    finally:
        monitor.cancel()
        await asyncio.gather(monitor, return_exceptions=True)
    return lag.max


async def _decode_on_the_loop(items: list[RawObject]) -> None:
    [as_dict(item) for item in items]


async def test_a_large_pulled_page_does_not_stop_the_loop(pool: asyncpg.Pool) -> None:
    items = _page()
    assert sum(len(item.json) for item in items) > 3_000_000
    sink = StoreSink(store=Store(pool), cluster="c1")
    snapshot_id = await sink.snapshot_start(PODS)
    # The reference: the loop held up by the page decoded on it. The best of three of each
    # (storing the page again changes nothing), so that a moment the machine is busy
    # elsewhere does not decide.
    decoding = min([await _lag_while(lambda: _decode_on_the_loop(items)) for _ in range(3)])
    storing = min([await _lag_while(lambda: sink.snapshot_page(PODS, snapshot_id, items))
                   for _ in range(3)])
    assert await pool.fetchval("SELECT count(*) FROM resources WHERE cluster = 'c1'") == OBJECTS
    assert storing < decoding / 2, (storing, decoding)


async def test_a_large_pushed_body_does_not_stop_the_loop(ingest: Ingest, pool: asyncpg.Pool) -> None:
    """Over real HTTP: the server is in this process, on this loop, as in ``kubepedia serve``."""
    token = await ingest.register_push("a")
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{ingest.url}{protocol.PREFIX}/a/snapshots"
    kind = protocol.type_to_dict(PODS)
    async with ingest.session.post(base, data=orjson.dumps({"type": kind}), headers=headers) as resp:
        snapshot = orjson.loads(await resp.read())["snapshot"]
    items = [as_dict(item) for item in _page()[:PUSHED]]
    body = orjson.dumps({"type": kind, "items": items})
    assert 3 * 1024 * 1024 < len(body) <= protocol.MAX_BODY_BYTES

    async def decode() -> None:
        orjson.loads(body)

    async def post() -> None:
        # A file-like body: aiohttp would copy plain bytes this large on the loop.
        async with ingest.session.post(f"{base}/{snapshot}/pages", data=io.BytesIO(body),
                                       headers=headers) as resp:
            assert resp.status == 200, await resp.read()

    decoding = min([await _lag_while(decode) for _ in range(3)])
    posting = min([await _lag_while(post) for _ in range(3)])
    assert await pool.fetchval("SELECT count(*) FROM resources WHERE cluster = 'a'") == PUSHED
    assert posting < decoding / 2, (posting, decoding)


def test_objects_arrive_as_json_and_are_decoded_alike() -> None:
    """What the store decodes from JSON is what the informer decoded."""
    item = _page()[0]
    assert orjson.loads(item.json) == as_dict(item)
