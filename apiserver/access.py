"""Access control for the read API: who the caller is (a bearer token) and what it may read.

Every request but ``/healthz``, ``/readyz`` and ``/version`` needs a token that an
authenticator knows (``apiserver.auth``), or, with anonymous reads turned on, no token
at all (the user ``system:anonymous`` in group ``system:unauthenticated``, which grants
may name). The caller's grants (``apiserver.grants``) become the request's ``Scope``,
which every query applies in its SQL (``apiserver.scope``): lists, counts, reports,
history and watches simply never meet what lies outside it.

A request for a type the grant allows nowhere on its path (no rule for the type in that
namespace, or in that cluster) is a 403 worded as kube-apiserver words it; that answer
depends on the path and the grant only, never on what is stored, so it tells a hidden
object from a missing one no more than a 404 does. A list across clusters with a partial
grant is just narrower.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware

from apiserver.auth import MAX_TOKEN, Authenticator, TokenReviewer, Unavailable
from apiserver.grants import ANONYMOUS, Grants, User, parse_grants
from apiserver.keys import SCOPE, USER, scope_of
from apiserver.reloading import ReloadingFile
from apiserver.scope import NOTHING_SCOPE, Scope
from kube.resources import ResourceType
from kube.status import StatusError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/version"})


class GrantsSource(Protocol):
    def scope_for(self, user: User) -> Scope:
        """The union of the rules granted to the user and its groups."""


class GrantsFile:
    """The grants file, current within a second of a change (a bad version is not taken)."""

    def __init__(self, path: Path, *, interval: float = 1.0) -> None:
        self._file = ReloadingFile(path, parse_grants, what="grants file", interval=interval)

    def scope_for(self, user: User) -> Scope:
        grants: Grants = self._file.current()
        return grants.scope_for(user)


class CombinedGrants:
    """Several grant sources at once: a caller's scope is the union of what each grants."""

    def __init__(self, *sources: GrantsSource) -> None:
        self._sources = sources

    def scope_for(self, user: User) -> Scope:
        return Scope(tuple(r for s in self._sources for r in s.scope_for(user).rules))


@dataclass(frozen=True, kw_only=True, slots=True)
class Access:
    """How callers are known and what they may read."""

    authenticators: Sequence[Authenticator]
    grants: GrantsSource
    anonymous: bool = False  # requests without a token read as system:anonymous

    async def close(self) -> None:
        for a in self.authenticators:
            if isinstance(a, TokenReviewer):
                await a.close()


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def _bearer(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN:
        return None
    return token


async def authenticate(access: Access, request: web.Request) -> User:
    """The caller, or a 401."""
    header = request.headers.get("Authorization")
    if header is None:
        if access.anonymous:
            return ANONYMOUS
        raise unauthorized()
    token = _bearer(header)
    if token is None:
        raise unauthorized()
    for authenticator in access.authenticators:
        try:
            user = await authenticator.authenticate(token)
        except Unavailable as exc:
            log.warning("an authenticator could not answer", extra={"error": str(exc)})
            continue
        if user is not None:
            return user
    raise unauthorized()


def access_middleware(access: Access) -> Middleware:
    @web.middleware
    async def authorized(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            request[SCOPE] = NOTHING_SCOPE
            return await handler(request)
        user = await authenticate(access, request)
        request[USER] = user
        request[SCOPE] = access.grants.scope_for(user)
        return await handler(request)

    return authorized


def access_ctx(access: Access) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await access.close()

    return ctx


def authorize(request: web.Request, *, verb: str, rtype: ResourceType, namespace: str | None,
              cluster: str | None, name: str | None = None) -> None:
    """A 403 unless the grant allows some object of the type where the path points."""
    # A cluster-scoped type is in namespace "": only rules over every namespace reach it.
    where_in = namespace if rtype.namespaced else ""
    if scope_of(request).may_read_some(group=rtype.group, resource=rtype.resource,
                                       namespace=where_in, cluster=cluster):
        return
    user = request.get(USER, ANONYMOUS).name
    what = rtype.resource if name is None else f'{rtype.resource} "{name}"'
    where = f'in the namespace "{namespace}"' if namespace is not None else "at the cluster scope"
    raise StatusError(403, "Forbidden",
                      f'{what} is forbidden: User "{user}" cannot {verb} resource "{rtype.resource}"'
                      f' in API group "{rtype.group}" {where}',
                      {"name": name, "group": rtype.group, "kind": rtype.resource} if name is not None
                      else {"group": rtype.group, "kind": rtype.resource})
