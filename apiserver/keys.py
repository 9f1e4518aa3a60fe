"""The read API's typed application keys (aiohttp ``AppKey``), in one place."""

from __future__ import annotations

from aiohttp import web

from apiserver.catalog import CatalogCache
from apiserver.feed import ChangeFeed
from apiserver.query import Scope
from syncer.store_app import POOL

CATALOG = web.AppKey("catalog", CatalogCache)
CONTINUE_KEY = web.AppKey("continue_key", bytes)
# The caller's scope. Until access control fills it per request, it is everything.
SCOPE = web.AppKey("scope", Scope)
FEED = web.AppKey("feed", ChangeFeed)

__all__ = ["CATALOG", "CONTINUE_KEY", "FEED", "POOL", "SCOPE"]
