"""The read API's application: Kubernetes paths (all clusters, or one under
``/clusters/{cluster}``), discovery, and health.

Every failure is a Kubernetes ``Status``; every path is read-only (other verbs: 405).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from apiserver.access import Access, access_ctx, access_middleware
from apiserver.catalog import CatalogCache
from apiserver.clusters import list_clusters
from apiserver.collections import collection_routes
from apiserver.discovery import discovery_routes
from apiserver.feed import TAIL_BYTES, ChangeFeed
from apiserver.history import history_routes
from apiserver.inspections import inspection_routes
from apiserver.keys import CATALOG, CONTINUE_KEY, FEED, POOL, REMAINING_CAP, WATCHES
from apiserver.limits import (
    DEFAULT_MAX_WATCHES_PER_SUBJECT,
    DEFAULT_READ_TIMEOUT_S,
    WatchSlots,
    pool_settings,
    timed_out,
)
from apiserver.metrics import metrics_routes, observed, store_metrics_ctx
from apiserver.objects import object_routes
from apiserver.openapi import openapi_routes
from apiserver.replicas import READS, ReadPools, spread
from apiserver.reports import report_routes
from kube.status import REASONS, StatusError, status_body
from syncer.db import POOLS, create_pool
from syncer.store_app import health_routes

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLUSTER_PREFIX = "/clusters/{cluster}"
# Clusterpedia's paths for the same lists and objects, so its users' queries and
# kubeconfigs keep working: registered before ours, whose ``/apis/{group}/...`` would
# otherwise take them.
CLUSTERPEDIA_PREFIX = "/apis/clusterpedia.io/v1beta1/resources"
PUSH_SILENCE_S = 300.0
REMAINING_COUNT_CAP = 10_000  # objects counted after a page, at most, for remainingItemCount
READ_METHODS = frozenset({"GET", "HEAD"})


def _status_response(error: StatusError) -> web.Response:
    response = web.Response(body=error.body(), status=error.code, content_type="application/json")
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


@web.middleware
async def errors_as_status(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        if request.writer.output_size > 0:
            # A streamed list or a watch had begun: a Status written now would land inside
            # that body. aiohttp logs the failure and closes the connection instead, so the
            # client sees a broken response, never a second one or a list that looks whole.
            raise
        return _failure(request, exc)


def _failure(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The Status answering a request that failed before its response began."""
    if isinstance(exc, StatusError):
        return _status_response(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        reason = REASONS.get(exc.status, exc.reason.replace(" ", ""))
        message = "the server could not find the requested resource" if exc.status == 404 else exc.reason
        return web.Response(body=orjson.dumps(status_body(exc.status, reason, message)), status=exc.status,
                            content_type="application/json")
    if isinstance(exc, asyncpg.QueryCanceledError):  # the statement timeout (apiserver.limits)
        log.warning("query timed out", extra={"path": request.path})
        return _status_response(timed_out())
    if isinstance(exc, (OSError, asyncpg.InterfaceError, asyncpg.PostgresError)):
        log.error("store unavailable", exc_info=exc, extra={"path": request.path})
        return _status_response(StatusError(503, "ServiceUnavailable",
                                            "the store is unavailable; retry later",
                                            headers={"Retry-After": "2"}))
    log.error("request failed", exc_info=exc, extra={"path": request.path})
    return _status_response(StatusError(500, "InternalError", "an internal error occurred"))


def _read_only(handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        if request.method not in READ_METHODS:
            raise StatusError(405, "MethodNotAllowed", f"kubepedia is a read-only view: {request.method}"
                              " is not allowed; change objects in their member cluster")
        return await handler(request)

    return guarded


_CONTINUE_KEY = """
WITH made AS (
    INSERT INTO api_secrets (name, value) VALUES ('continue', $1) ON CONFLICT (name) DO NOTHING
    RETURNING value)
SELECT value FROM made UNION ALL SELECT value FROM api_secrets WHERE name = 'continue'
"""


async def continue_key(pool: asyncpg.Pool) -> bytes:
    """The key continue tokens are signed with: one per database, so every API process
    sharing the store accepts the others' tokens."""
    value: bytes = await pool.fetchval(_CONTINUE_KEY, secrets.token_bytes(32))
    return value


def _store_ctx(database_url: str, *, read_database_urls: Sequence[str], push_silence_s: float,
               read_timeout_s: float) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # Custom plans: a selector's selectivity decides between the order index and the
        # label index, and a generic plan would pick one for every query.
        settings = {"plan_cache_mode": "force_custom_plan", **pool_settings(read_timeout_s)}
        async with contextlib.AsyncExitStack() as stack:
            pool = await create_pool(database_url, max_size=10, staging=False, server_settings=settings)
            stack.push_async_callback(pool.close)
            replicas = []
            for url in read_database_urls:  # connected lazily: a replica down at start is skipped
                replica = await create_pool(url, min_size=0, max_size=10, staging=False,
                                            server_settings=settings)
                stack.push_async_callback(replica.close)
                replicas.append(replica)
            app[POOL] = pool
            app[READS] = ReadPools(primary=pool, replicas=replicas)
            app[CATALOG] = CatalogCache(pool, push_silence_s=push_silence_s)
            app[CONTINUE_KEY] = await continue_key(pool)  # a write: on the primary
            with POOLS.watching("api", pool):
                yield

    return ctx


def _routes() -> list[web.RouteDef]:
    routes: list[web.RouteDef] = [*health_routes(), *metrics_routes(),
                                  web.route("*", "/clusters", _read_only(list_clusters))]
    # Collections before the object paths, which would take them for a type's list and get.
    routes += [web.route("*", path, _read_only(handler)) for path, handler in collection_routes()]
    for prefix in (CLUSTERPEDIA_PREFIX + CLUSTER_PREFIX, CLUSTERPEDIA_PREFIX, "", CLUSTER_PREFIX):
        pairs: list[tuple[str, Any]] = [*discovery_routes(prefix), *object_routes(prefix)]
        routes += [web.route("*", path, _read_only(handler)) for path, handler in pairs]
    routes += [web.route("*", path, _read_only(handler)) for path, handler in history_routes()]  # history
    routes += [web.route("*", path, _read_only(handler)) for path, handler in report_routes()]  # reports
    routes += [web.route("*", path, _read_only(handler)) for path, handler in openapi_routes()]  # openapi
    routes += inspection_routes()  # reads, and POST of a run (not a write of any object)
    return routes


def build_app(*, database_url: str, access: Access, read_database_urls: Sequence[str] = (),
              push_silence_s: float = PUSH_SILENCE_S,
              remaining_count_cap: int = REMAINING_COUNT_CAP,
              feed_tail_bytes: int = TAIL_BYTES, read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
              max_watches_per_subject: int = DEFAULT_MAX_WATCHES_PER_SUBJECT) -> web.Application:
    """The read API; ``access`` says who may call it and what each caller may read
    (``apiserver.access``): there is no way to build it open by omission."""
    app = web.Application(middlewares=[observed, errors_as_status, access_middleware(access), spread])
    app[REMAINING_CAP] = remaining_count_cap
    app[WATCHES] = WatchSlots(max_per_subject=max_watches_per_subject)
    app.cleanup_ctx.append(access_ctx(access))
    app.cleanup_ctx.append(_store_ctx(database_url, read_database_urls=read_database_urls,
                                      push_silence_s=push_silence_s,
                                      read_timeout_s=read_timeout_s))
    app.cleanup_ctx.append(store_metrics_ctx)
    app.cleanup_ctx.append(ChangeFeed.context(database_url, FEED, tail_bytes=feed_tail_bytes,
                                                reads=READS))
    app.add_routes(_routes())
    return app
