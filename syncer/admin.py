"""The registry's admin API (``/admin/v1``), on a listener of its own.

``kubepedia cluster`` talks to it with the admin token. It has its own listener (loopback by
default) so that the ingest listener can be opened to agents in other networks without
exposing registration. It shares the ingest application's pool and pull manager: start the
ingest application first.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from aiohttp import web

from agent import protocol
from syncer import registry
from syncer.admission import bearer_token
from syncer.ingest import Store
from syncer.metrics import forget_cluster
from syncer.quota import check_settings
from syncer.registry import RegistryError
from syncer.server import KUBECONFIGS, PULL
from syncer.status import errors_as_status, ok
from syncer.store_app import POOL, health_routes
from syncer.validate import BadInput, decode_object

log = logging.getLogger(__name__)

ADMIN_TOKEN = web.AppKey("admin_token", str)
INGEST = web.AppKey("ingest", web.Application)
MAX_ADMIN_BODY = 1024 * 1024  # a kubeconfig with its certificates inlined, labels, settings


def _admin(request: web.Request) -> None:
    offered = bearer_token(request).encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(offered, request.app[ADMIN_TOKEN].encode()):
        raise RegistryError("invalid admin token", code=401, reason="Unauthorized")


async def _body(request: web.Request) -> dict[str, Any]:
    return decode_object(await request.read(), what="request body")


def _settings(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    labels, settings = body.get("labels") or {}, body.get("settings") or {}
    if not isinstance(labels, dict) or not isinstance(settings, dict):
        raise BadInput("labels and settings must be objects")
    try:
        check_settings(settings)
    except ValueError as exc:
        raise RegistryError(str(exc), code=422, reason="Invalid") from exc
    return labels, settings


async def admin_add(request: web.Request) -> web.Response:
    _admin(request)
    body = await _body(request)
    name, mode = protocol.required_str(body, "name"), body.get("mode")
    if mode not in ("push", "pull"):
        raise BadInput("mode must be 'push' or 'pull'")
    labels, settings = _settings(body)
    kubeconfig = body.get("kubeconfig")
    if kubeconfig is not None and not isinstance(kubeconfig, str):
        raise BadInput("kubeconfig must be the kubeconfig document as a string")
    token = await registry.add(request.app[POOL], name=name, mode=mode, kubeconfig=kubeconfig,
                               kubeconfigs=request.app[KUBECONFIGS], labels=labels, settings=settings)
    log.info("cluster registered", extra={"cluster": name, "mode": mode})
    if mode == "pull":
        request.app[PULL].poke()
    return ok({"name": name, "mode": mode, "token": token}, code=201)


async def admin_list(request: web.Request) -> web.Response:
    _admin(request)
    return ok({"clusters": await registry.overview(request.app[POOL])})


async def admin_remove(request: web.Request) -> web.Response:
    _admin(request)
    name = request.match_info["cluster"]
    if await registry.get(request.app[POOL], name) is None:
        raise RegistryError(f"cluster {name[:80]!r} is not registered", code=404, reason="NotFound")
    deleted = await Store(request.app[POOL]).remove_cluster(cluster=name)
    forget_cluster(name)
    request.app[PULL].poke()
    log.info("cluster removed", extra={"cluster": name, "objects_deleted": deleted})
    return ok({"name": name, "deleted": deleted})


async def admin_rotate_token(request: web.Request) -> web.Response:
    """A new agent token for a push cluster, shown once; the old one keeps working for
    ``graceSeconds`` (default ``registry.TOKEN_GRACE_S``)."""
    _admin(request)
    raw = await request.read()
    body = decode_object(raw, what="request body") if raw.strip() else {}
    grace = body.get("graceSeconds", registry.TOKEN_GRACE_S)
    if isinstance(grace, bool) or not isinstance(grace, int | float):
        raise BadInput("graceSeconds must be a number of seconds")
    name = request.match_info["cluster"]
    rotated = await registry.rotate_token(request.app[POOL], name=name, grace_s=grace)
    expires = rotated.previous_expires_at
    log.info("agent token rotated", extra={"cluster": name, "grace_s": grace})
    return ok({"name": name, "token": rotated.token,
               "previousTokenExpiresAt": expires.isoformat() if expires is not None else None})


def routes() -> list[web.RouteDef]:
    return [
        *health_routes(),
        web.post("/admin/v1/clusters", admin_add),
        web.get("/admin/v1/clusters", admin_list),
        web.delete("/admin/v1/clusters/{cluster}", admin_remove),
        web.post("/admin/v1/clusters/{cluster}/token", admin_rotate_token),
    ]


async def _borrow(app: web.Application) -> None:
    ingest = app[INGEST]
    if POOL not in ingest:
        raise RuntimeError("start the ingest application before the admin application")
    app[POOL] = ingest[POOL]
    app[PULL] = ingest[PULL]
    app[KUBECONFIGS] = ingest[KUBECONFIGS]


def build_admin_app(ingest: web.Application, *, admin_token: str) -> web.Application:
    app = web.Application(client_max_size=MAX_ADMIN_BODY, middlewares=[errors_as_status])
    app[ADMIN_TOKEN] = admin_token
    app[INGEST] = ingest
    app.on_startup.append(_borrow)
    app.add_routes(routes())
    return app
