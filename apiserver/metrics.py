"""The read API's Prometheus metrics, served at ``/metrics`` on its listener.

* every request's time by route, method and status code. The route is the matched route's
  path template (``/api/v1/namespaces/{namespace}/{resource}``), never the path a caller
  sent, and an unknown method is ``other``: a caller cannot make new series. A watch is
  method ``WATCH`` (its time is how long it stayed open), so that list latencies stay apart;
* open watches;
* the store: its connection pools (``syncer.db.POOLS``) and the change log's oldest
  retained entry, read at scrape time (one index probe).

``metrics_routes`` is the one place that adds ``/metrics`` to the application: whoever
decides who may read it (it names clusters and resource types) wraps that.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
from aiohttp import web
from prometheus_client import Gauge, Histogram

from apiserver.params import TRUE
from kube import metrics as exposition
from kube.metrics import scrape_hook
from syncer.store_app import POOL

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# From a millisecond (a GET by name) to half a minute (a large list streamed).
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_SECONDS = Histogram("kubepedia_api_request_duration_seconds",
                            "Time to answer a read API request, by route template, method and code",
                            ["route", "method", "code"], buckets=_SECONDS)
OPEN_WATCHES = Gauge("kubepedia_api_open_watches", "Watches the read API is serving")
CHANGE_LOG_AGE = Gauge("kubepedia_change_log_oldest_age_seconds",
                       "Age of the oldest change the change log keeps (watches and history reach"
                       " back this far), by the database's clock")


def route_of(request: web.Request) -> str:
    """The matched route's template; ``unmatched`` for paths no route takes."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


def method_of(request: web.Request) -> str:
    if request.method == "GET" and request.query.get("watch", "").lower() in TRUE:
        return "WATCH"
    return request.method if request.method in METHODS else "other"


@web.middleware
async def observed(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outside every other middleware, so that it sees the code the caller got."""
    started = time.perf_counter()
    code = 500
    try:
        response = await handler(request)
        code = response.status
        return response
    except web.HTTPException as exc:
        code = exc.status
        raise
    finally:
        REQUEST_SECONDS.labels(route_of(request), method_of(request), str(code)).observe(
            time.perf_counter() - started)


_OLDEST = """
SELECT extract(epoch FROM now() - at)::float8 FROM change_log ORDER BY seq LIMIT 1
"""


async def refresh_change_log(pool: asyncpg.Pool) -> None:
    age: float | None = await pool.fetchval(_OLDEST)
    CHANGE_LOG_AGE.set(max(age or 0.0, 0.0))


async def store_metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """A cleanup context (after the pool's): the change log's age at each scrape."""
    pool = app[POOL]
    with scrape_hook(lambda: refresh_change_log(pool)):
        yield


def metrics_routes() -> list[web.RouteDef]:
    """``/metrics``: the one registration (see the module docstring)."""
    return exposition.metrics_routes()
