"""What a write must get through before the store sees it, in this order:

1. Authentication, before anything else is spent on the request: no slot is taken and no
   byte of the body is read for a caller without a valid token.
2. A slot of the cluster's own: a cluster may read and process at most ``per_cluster``
   requests at once, so one slow or flooding agent cannot take every slot.
3. The body, read while decompressing, cut off at ``max_body`` bytes (413) and at
   ``body_timeout`` seconds (408): a body that trickles in holds only its cluster's slot,
   and only for so long.
4. A slot of the global bound on concurrent parsing and store transactions (the pool keeps
   room for reads). Slots that do not free up within ``wait`` seconds answer 429 with
   ``Retry-After``: the agent keeps its place and comes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from agent import protocol
from syncer.status import Refused

RETRY_AFTER_BUSY = "1"


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    max_body: int = protocol.MAX_BODY_BYTES  # bytes after decompression
    body_timeout: float = 30.0  # seconds for the whole body to arrive
    write_slots: int = 6  # concurrent parses and store transactions, all clusters together
    per_cluster: int = 3  # requests one cluster may have past authentication at once
    wait: float = 2.0  # seconds a request may wait for a slot before it is told to come back


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
            async with self._held(share.slots, busy(f"cluster {name} has {self.limits.per_cluster}"
                                                    " requests in progress")):
                yield
        finally:
            share.users -= 1
            if share.users == 0:
                del self._shares[name]

    @asynccontextmanager
    async def store(self) -> AsyncIterator[None]:
        async with self._held(self.total, busy("the store is behind")):
            yield

    @asynccontextmanager
    async def _held(self, slots: asyncio.Semaphore, refusal: Refused) -> AsyncIterator[None]:
        try:
            await asyncio.wait_for(slots.acquire(), self.limits.wait)
        except TimeoutError as exc:
            raise refusal from exc
        try:
            yield
        finally:
            slots.release()


def too_large(message: str) -> Refused:
    return Refused(413, "RequestEntityTooLarge", message, close=True)


async def read_body(request: web.Request, limits: Limits) -> bytes:
    """The request body, decompressed, refused past ``max_body`` bytes or ``body_timeout``.

    aiohttp (>= 3.14.4) decompresses in bounded steps as the body is read; counting what
    comes out of each step keeps a small compressed body from growing without bound."""
    limit = limits.max_body
    length = request.content_length
    if length is not None and length > limit and not request.headers.get("Content-Encoding"):
        raise too_large(f"the body is {length} bytes, over the limit of {limit}")
    body = bytearray()
    try:
        async with asyncio.timeout(limits.body_timeout):
            while chunk := await request.content.readany():
                body += chunk
                if len(body) > limit:
                    raise too_large(f"the body is over the limit of {limit} bytes (after decompression)")
    except TimeoutError as exc:
        raise Refused(408, "Timeout", f"the body did not arrive within {limits.body_timeout:g} seconds",
                      close=True) from exc
    return bytes(body)
