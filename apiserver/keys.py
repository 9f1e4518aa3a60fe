"""The read API's typed application and request keys (aiohttp ``AppKey``, ``RequestKey``), in one place."""

from __future__ import annotations

from aiohttp import web

from apiserver.catalog import CatalogCache
from apiserver.feed import ChangeFeed
from apiserver.grants import User
from apiserver.scope import NOTHING_SCOPE, Scope
from syncer.store_app import POOL

CATALOG = web.AppKey("catalog", CatalogCache)
CONTINUE_KEY = web.AppKey("continue_key", bytes)
FEED = web.AppKey("feed", ChangeFeed)
# A page's remainingItemCount is counted up to this many objects, and left unset above it.
REMAINING_CAP = web.AppKey("remaining_count_cap", int)
# The authenticated caller and what its grants let it read (apiserver.access sets them).
USER = web.RequestKey("user", User)
SCOPE = web.RequestKey("scope", Scope)


def scope_of(request: web.Request) -> Scope:
    """The caller's scope; nothing where access control has not set one."""
    scope: Scope = request.get(SCOPE, NOTHING_SCOPE)
    return scope


__all__ = ["CATALOG", "CONTINUE_KEY", "FEED", "POOL", "REMAINING_CAP", "SCOPE", "USER", "scope_of"]
