"""Decoding and validating what arrives without stopping the event loop.

One event loop serves every agent's requests and every pulled cluster's informers. A
worker thread is not enough to keep large work off it: orjson holds the GIL for the whole
of a call (a 4 MiB body of pods is one call of 100-300 ms on a busy 2-core machine), and
the validators are Python, which shares the GIL with the loop; with several pages being
validated at once, the loop waited its turn among them for hundreds of milliseconds.

So large work runs in a small pool of processes (``DECODER_PROCESSES``, spawned when first
needed, shared by everything in the process):

* a large request body is decoded there, and its objects come back still as JSON, one
  ``bytes`` each (``split_body``): receiving them costs the loop a copy, not a parse;
* a page or batch whose objects are JSON (pull mode's informers keep them so, and large
  bodies arrive so) is decoded and validated there (``off_loop``), and comes back as rows
  whose objects are again ``bytes``.

Small bodies and batches, the common case (a watch batch of a few events), stay in a
thread: a process round trip would cost more than their decoding.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import orjson

from syncer.validate import decode_object

T = TypeVar("T")

LARGE_BYTES = 256 * 1024  # JSON above this is decoded in a decoder process
DECODER_PROCESSES = 2
_pool: ProcessPoolExecutor | None = None


def _processes() -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        # spawn: forking a process that runs threads and an event loop would copy their locks.
        # The pool's workers end at interpreter exit (concurrent.futures joins them).
        _pool = ProcessPoolExecutor(DECODER_PROCESSES, mp_context=multiprocessing.get_context("spawn"))
    return _pool


def json_bytes(values: Sequence[Any], *, events: bool = False) -> int:
    """Bytes of JSON among ``values``: objects given as ``bytes`` or (``events``) events whose
    object is. Objects given decoded are not looked into here, on the event loop."""
    if events:
        values = [e.get("object") for e in values if type(e) is dict]
    return sum(len(value) for value in values if isinstance(value, bytes))


async def off_loop(fn: Callable[..., T], /, *args: Any, size: int, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` away from the event loop: in a decoder process when ``size``
    (bytes of JSON to decode) is large, else in a worker thread. ``fn`` and what it is given
    and returns must pickle."""
    if size <= LARGE_BYTES:
        return await asyncio.to_thread(fn, *args, **kwargs)
    call = functools.partial(fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_processes(), call)


def split_body(raw: bytes) -> dict[str, Any]:
    """The request body with each object of its ``items`` and each event's ``object`` left
    as JSON (``bytes``); anything else as decoded."""
    body = decode_object(raw, what="request body")
    items = body.get("items")
    if isinstance(items, list):
        body["items"] = [orjson.dumps(item) if isinstance(item, dict) else item for item in items]
    events = body.get("events")
    if isinstance(events, list):
        for event in events:
            if isinstance(event, dict) and isinstance(event.get("object"), dict):
                event["object"] = orjson.dumps(event["object"])
    return body


async def decode_body(raw: bytes) -> dict[str, Any]:
    """A request body, decoded away from the event loop (see the module docstring)."""
    if len(raw) <= LARGE_BYTES:
        return await asyncio.to_thread(decode_object, raw, what="request body")
    return await off_loop(split_body, raw, size=len(raw))
