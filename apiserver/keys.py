"""The read API's typed application and request keys (aiohttp ``AppKey``, ``RequestKey``), in one place."""

from __future__ import annotations

from aiohttp import web

from apiserver.catalog import CatalogCache
from apiserver.feed import ChangeFeed
from apiserver.grants import ANONYMOUS, User
from apiserver.limits import WatchSlots
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


# Open watches per subject, bounded (apiserver.limits).
WATCHES = web.AppKey("watches", WatchSlots)


def scope_of(request: web.Request) -> Scope:
    """The caller's scope; nothing where access control has not set one."""
    scope: Scope = request.get(SCOPE, NOTHING_SCOPE)
    return scope


def subject_of(request: web.Request) -> str:
    """Whom a request counts against (open watches): the authenticated user, by name. Not the
    peer address: behind Kubernetes' aggregation layer every request comes from the
    kube-apiserver, and a client's address says nothing of who it is."""
    user: User = request.get(USER, ANONYMOUS)
    return user.name


__all__ = ["CATALOG", "CONTINUE_KEY", "FEED", "POOL", "REMAINING_CAP", "SCOPE", "USER", "WATCHES", "scope_of",
           "subject_of"]
