"""What a write must get through before the store sees it, in this order:

1. Authentication, before anything else is spent on the request: no slot is taken and no
   byte of the body is read for a caller without a valid token.
2. A slot of the cluster's own: a cluster may read and process at most ``per_cluster``
   requests at once, so one slow or flooding agent cannot take every slot. Its requests
   may wait for one a while (``cluster_wait``): waiting holds nothing others need, and an
   agent syncing many types at once would otherwise meet 429s at every turn.
3. The body, cut off at ``max_body`` bytes (413) and at ``body_timeout`` seconds (408): a
   body that trickles in holds only its cluster's slot, and only for so long. A gzip or
   deflate body is decompressed here, in steps that never produce more than the limit,
   and only now: the ingest listener is served without aiohttp's automatic
   decompression (:data:`SERVER_SETTINGS`), so a body that is refused, or never read,
   costs no decompression at all (aiohttp would otherwise go on decompressing what it
   discards while it lingers on a refused request).
4. A slot of the global bound on concurrent parsing and store transactions (the pool keeps
   room for reads), within ``wait`` seconds. A slot that does not free up in time answers
   429 with ``Retry-After``: the agent keeps its place and comes back.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from agent import protocol
from syncer.status import Refused

RETRY_AFTER_BUSY = "1"
# How the ingest listener is served (``web.AppRunner(app, **SERVER_SETTINGS)``): bodies as
# they arrive, and at most 2 s spent reading what is left of a refused one.
SERVER_SETTINGS = {"auto_decompress": False, "lingering_time": 2.0}
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    max_body: int = protocol.MAX_BODY_BYTES  # bytes after decompression
    body_timeout: float = 30.0  # seconds for the whole body to arrive
    write_slots: int = 6  # concurrent parses and store transactions, all clusters together
    per_cluster: int = 4  # requests one cluster may have past authentication at once
    cluster_wait: float = 15.0  # seconds a request may wait for one of its cluster's slots
    wait: float = 2.0  # seconds it may then wait for a global slot before it is told to come back


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Refused(401, "Unauthorized", "a bearer token is required")
    return token.strip()


def busy(what: str) -> Refused:
    return Refused(429, "TooManyRequests", f"{what}; retry later", headers={"Retry-After": RETRY_AFTER_BUSY})


@dataclass(kw_only=True, slots=True)
class _Share:
    slots: asyncio.Semaphore
    users: int = 0


@dataclass(kw_only=True)
class WriteSlots:
    """The global bound and each cluster's share; see the module docstring."""

    limits: Limits
    total: asyncio.Semaphore = field(init=False)
    _shares: dict[str, _Share] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.total = asyncio.Semaphore(self.limits.write_slots)

    @asynccontextmanager
    async def cluster(self, name: str) -> AsyncIterator[None]:
        share = self._shares.setdefault(name, _Share(slots=asyncio.Semaphore(self.limits.per_cluster)))
        share.users += 1
        try:
            refusal = busy(f"cluster {name} has {self.limits.per_cluster} requests in progress")
            async with self._held(share.slots, refusal, self.limits.cluster_wait):
                yield
        finally:
            share.users -= 1
            if share.users == 0:
                del self._shares[name]

    @asynccontextmanager
    async def store(self) -> AsyncIterator[None]:
        async with self._held(self.total, busy("the store is behind"), self.limits.wait):
            yield

    @asynccontextmanager
    async def _held(self, slots: asyncio.Semaphore, refusal: Refused, wait: float) -> AsyncIterator[None]:
        try:
            await asyncio.wait_for(slots.acquire(), wait)
        except TimeoutError as exc:
            raise refusal from exc
        try:
            yield
        finally:
            slots.release()


def too_large(message: str) -> Refused:
    return Refused(413, "RequestEntityTooLarge", message, close=True)


async def read_body(request: web.Request, limits: Limits) -> bytes:
    """The request body, decompressed, refused past ``max_body`` bytes (compressed or not)
    or ``body_timeout`` seconds."""
    limit = limits.max_body
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in _WBITS and encoding != "identity":
        raise Refused(415, "UnsupportedMediaType", f"Content-Encoding {encoding[:40]!r}: use gzip",
                      close=True)
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(f"the body is {length} bytes, over the limit of {limit}")
    inflate = _Inflater(_WBITS[encoding], limit) if encoding in _WBITS else None
    body = bytearray()
    try:
        async with asyncio.timeout(limits.body_timeout):
            received = 0
            while chunk := await request.content.readany():
                received += len(chunk)
                if received > limit:
                    raise too_large(f"the body is over the limit of {limit} bytes")
                body += inflate.feed(chunk) if inflate is not None else chunk
    except TimeoutError as exc:
        raise Refused(408, "Timeout", f"the body did not arrive within {limits.body_timeout:g} seconds",
                      close=True) from exc
    if inflate is not None:
        inflate.finish()
    return bytes(body)


class _Inflater:
    """Decompress one gzip member (or zlib stream), never producing more than ``limit``
    bytes in all: each step asks for at most what is left of the limit, plus one byte."""

    def __init__(self, wbits: int, limit: int) -> None:
        self._decoder = zlib.decompressobj(wbits)
        self._limit = self._left = limit

    def feed(self, chunk: bytes) -> bytes:
        if self._decoder.eof:
            raise self._extra()
        try:
            out = self._decoder.decompress(chunk, self._left + 1)
        except zlib.error as exc:
            raise Refused(400, "BadRequest", f"the body is not valid compressed data: {exc}",
                          close=True) from exc
        self._left -= len(out)
        if self._left < 0 or self._decoder.unconsumed_tail:
            raise too_large(f"the body is over the limit of {self._limit} bytes after decompression")
        if self._decoder.unused_data:
            raise self._extra()
        return out

    def finish(self) -> None:
        if not self._decoder.eof:
            raise Refused(400, "BadRequest", "the compressed body ends early")

    @staticmethod
    def _extra() -> Refused:
        return Refused(400, "BadRequest", "data after the end of the compressed body (one gzip member"
                                          " is expected)", close=True)
