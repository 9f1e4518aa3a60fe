"""The read API's typed application keys (aiohttp ``AppKey``), in one place."""

from __future__ import annotations

from aiohttp import web

from apiserver.catalog import CatalogCache
from apiserver.feed import ChangeFeed
from apiserver.limits import WatchSlots
from apiserver.query import Scope
from syncer.store_app import POOL

CATALOG = web.AppKey("catalog", CatalogCache)
CONTINUE_KEY = web.AppKey("continue_key", bytes)
# The caller's scope. Until access control fills it per request, it is everything.
SCOPE = web.AppKey("scope", Scope)
FEED = web.AppKey("feed", ChangeFeed)
# A page's remainingItemCount is counted up to this many objects, and left unset above it.
REMAINING_CAP = web.AppKey("remaining_count_cap", int)
# Open watches per subject, bounded (apiserver.limits).
WATCHES = web.AppKey("watches", WatchSlots)

__all__ = ["CATALOG", "CONTINUE_KEY", "FEED", "POOL", "REMAINING_CAP", "SCOPE", "WATCHES"]
