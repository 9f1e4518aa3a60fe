"""Where the read API's queries go: PostgreSQL streaming replicas (``--read-database-url``,
several allowed) or, without any, the primary (docs/replicas.md).

Requests are spread round-robin over the replicas. A replica whose connection fails (it is
down, restarting, or refuses connections) is skipped for ``SKIP_S``; while every replica is
skipped, the primary answers. The request that met the failure is answered 503 (its
response may have begun: it cannot be replayed elsewhere); the next ones go elsewhere.
Writes (the continue-token key, ``apiserver.app``) always go to the primary, and so do the
catalog and the store metrics: small, and kept in step with the syncer.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from aiohttp import web

from syncer.store_app import POOL

log = logging.getLogger(__name__)

SKIP_S = 10.0
# What says that a server, not a query, failed.
_LOST = (OSError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
         asyncpg.ConnectionFailureError, asyncpg.AdminShutdownError)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ReadPools:
    """The replicas' pools, taken in turn, failed ones skipped for a while."""

    def __init__(self, *, primary: asyncpg.Pool, replicas: Sequence[asyncpg.Pool],
                 skip_s: float = SKIP_S) -> None:
        self.primary = primary
        self.replicas = tuple(replicas)
        self._skip_s = skip_s
        self._until: dict[int, float] = {}
        self._turn = itertools.count()

    def pick(self) -> asyncpg.Pool:
        now = time.monotonic()
        count = len(self.replicas)
        start = next(self._turn)
        for i in range(count):
            index = (start + i) % count
            if self._until.get(index, 0.0) <= now:
                return self.replicas[index]
        return self.primary

    def failed(self, pool: asyncpg.Pool) -> None:
        for index, replica in enumerate(self.replicas):
            if replica is pool:
                self._until[index] = time.monotonic() + self._skip_s
                log.warning("read replica failing; skipped for a while", extra={"replica": index,
                                                                                 "seconds": self._skip_s})


READS = web.AppKey("read_pools", ReadPools)
_CHOSEN = web.RequestKey("read_pool", asyncpg.Pool)


def read_pool(request: web.Request) -> asyncpg.Pool:
    """The pool this request reads from (chosen once per request by ``spread``)."""
    return request.get(_CHOSEN) or request.app[POOL]


@web.middleware
async def spread(request: web.Request, handler: Handler) -> web.StreamResponse:
    pools = request.app.get(READS)
    if pools is None or not pools.replicas:
        return await handler(request)
    chosen = request[_CHOSEN] = pools.pick()
    try:
        return await handler(request)
    except _LOST:
        pools.failed(chosen)
        raise
