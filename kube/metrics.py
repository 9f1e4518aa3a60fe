"""Serving Prometheus metrics: one ``/metrics`` handler for every listener of every process.

Every process (``kubepedia serve``, ``kubepedia agent``) keeps its metrics in
prometheus-client's process registry, so each of its listeners serves the same series.
Counters and histograms are kept as things happen; figures that live in the database
(sync lag, the change log's oldest entry) are read when scraped, by *scrape hooks* that
the application owning the pool registers for its lifetime (``scrape_hook``). A hook that
fails or takes longer than ``HOOK_TIMEOUT_S`` leaves its series as they were and is
logged: a store that does not answer must not take the other series down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger(__name__)

HOOK_TIMEOUT_S = 2.0
ScrapeHook = Callable[[], Awaitable[None]]
_HOOKS: list[ScrapeHook] = []


@contextlib.contextmanager
def scrape_hook(hook: ScrapeHook) -> Iterator[None]:
    """Run ``hook`` before each scrape while the block runs (an application's lifetime)."""
    _HOOKS.append(hook)
    try:
        yield
    finally:
        _HOOKS.remove(hook)


async def _refresh() -> None:
    for hook in list(_HOOKS):
        try:
            async with asyncio.timeout(HOOK_TIMEOUT_S):
                await hook()
        except Exception as exc:  # any failure: the series stay as they were, the scrape answers
            log.warning("metrics: a scrape hook failed", extra={"hook": getattr(hook, "__qualname__", "?"),
                                                                 "error": str(exc) or type(exc).__name__})


async def metrics(request: web.Request) -> web.Response:
    """The Prometheus text format of the process registry, after the scrape hooks ran."""
    await _refresh()
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_routes() -> list[web.RouteDef]:
    return [web.get("/metrics", metrics)]
