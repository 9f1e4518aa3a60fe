"""The ingest listener: agents push their clusters' changes here (see ``agent.protocol``),
and the ``kubepedia cluster`` commands manage the registry through ``/admin/v1``.

Every error is a Kubernetes ``Status``. Writes are admitted through a bounded gate: when
the store is behind, agents get 429 with ``Retry-After`` and keep their place.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from agent import protocol
from agent.events import ResourceType
from syncer import registry
from syncer.ingest import CheckpointMismatch, FenceLost, Registered, SnapshotLost, Store
from syncer.pull import PullManager
from syncer.registry import RegistryError
from syncer.sink import TRANSIENT, UNAVAILABLE
from syncer.store_app import POOL, health_routes, pool_ctx
from syncer.validate import BadInput, decode_json

log = logging.getLogger(__name__)

ADMIN_TOKEN = web.AppKey("admin_token", str)
GATE = web.AppKey("gate", asyncio.Semaphore)
PULL = web.AppKey("pull", PullManager)
KUBECONFIGS = web.AppKey("kubeconfigs", registry.Kubeconfigs)
MAX_BODY = 64 * 1024 * 1024  # a page of 500 objects; a single object is at most 3 MiB
WRITE_SLOTS = 6  # concurrent ingest transactions; the pool keeps room for reads
ADMISSION_WAIT_S = 2.0
RETRY_AFTER_BUSY = "1"
RETRY_AFTER_DOWN = "2"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status(code: int, reason: str, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(protocol.status_body(code, reason, message)), status=code,
                        content_type="application/json", headers=headers)


def ok(body: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


class Busy(Exception):
    """No write slot freed up in time: the agent should come back later."""


@web.middleware
async def errors_as_status(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return status(exc.status, exc.reason.replace(" ", ""), exc.text or exc.reason)
    except Busy:
        return status(429, "TooManyRequests", "the store is behind; retry later",
                      headers={"Retry-After": RETRY_AFTER_BUSY})
    except RegistryError as exc:
        return status(exc.code, exc.reason, str(exc))
    except (BadInput, protocol.ProtocolError) as exc:
        return status(400, "BadRequest", str(exc))
    except SnapshotLost as exc:
        return status(409, protocol.SNAPSHOT_LOST, str(exc))
    except CheckpointMismatch as exc:
        return status(409, protocol.CHECKPOINT_MISMATCH, str(exc))
    except FenceLost as exc:
        return status(404, "NotFound", str(exc))
    except (*UNAVAILABLE, *TRANSIENT) as exc:
        log.warning("store unavailable", extra={"path": request.path, "error": str(exc)})
        return status(503, "ServiceUnavailable", f"store unavailable: {exc}",
                      headers={"Retry-After": RETRY_AFTER_DOWN})
    except asyncpg.DataError as exc:  # e.g. text PostgreSQL cannot store
        return status(400, "BadRequest", f"the store refused the data: {exc}")
    except Exception as exc:
        log.exception("request failed", extra={"path": request.path})
        return status(500, "InternalError", f"internal error: {type(exc).__name__}")


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise RegistryError("a bearer token is required", code=401, reason="Unauthorized")
    return token.strip()


async def _body(request: web.Request) -> dict[str, Any]:
    data = decode_json(await request.read(), what="request body")
    if not isinstance(data, dict):
        raise BadInput("request body: expected a JSON object")
    return data


async def _cluster(request: web.Request) -> registry.Cluster:
    name = request.match_info["cluster"]
    cluster = await registry.authenticate(request.app[POOL], cluster=name, token=_bearer(request))
    await registry.seen(request.app[POOL], name)
    return cluster


def _store(request: web.Request, cluster: str) -> Store:
    return Store(request.app[POOL], guards=[Registered(cluster=cluster)])


@asynccontextmanager
async def _write_slot(request: web.Request) -> AsyncIterator[None]:
    """Admit a write (before its body is even read) if a slot frees up soon."""
    gate = request.app[GATE]
    try:
        await asyncio.wait_for(gate.acquire(), ADMISSION_WAIT_S)
    except TimeoutError as exc:
        raise Busy() from exc
    try:
        yield
    finally:
        gate.release()


async def _write(request: web.Request) -> tuple[registry.Cluster, ResourceType, dict[str, Any]]:
    """Authenticate, then (inside a write slot) read and check the body's type."""
    cluster = await _cluster(request)
    body = await _body(request)
    return cluster, protocol.type_from_dict(body.get("type")), body


def _list(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if not isinstance(value, list):
        raise BadInput(f"{key} must be a list")
    return value


# -- agent protocol ------------------------------------------------------------------------------

async def get_checkpoints(request: web.Request) -> web.Response:
    cluster = await _cluster(request)
    return ok({"checkpoints": await _store(request, cluster.name).checkpoints(cluster=cluster.name)})


async def post_snapshot(request: web.Request) -> web.Response:
    async with _write_slot(request):
        cluster, rtype, _ = await _write(request)
        snapshot_id = await _store(request, cluster.name).snapshot_start(cluster=cluster.name, rtype=rtype)
        return ok({"snapshot": str(snapshot_id)})


def _snapshot_id(request: web.Request) -> int:
    value = request.match_info["snapshot"]
    if not value.isdigit():
        raise SnapshotLost(f"unknown snapshot {value!r}")
    return int(value)


async def post_snapshot_page(request: web.Request) -> web.Response:
    async with _write_slot(request):
        cluster, rtype, body = await _write(request)
        accepted = await _store(request, cluster.name).snapshot_page(
            cluster=cluster.name, rtype=rtype, snapshot_id=_snapshot_id(request), items=_list(body, "items"),
            keep_secret_data=cluster.keep_secret_data)
        return ok({"accepted": accepted})


async def post_snapshot_end(request: web.Request) -> web.Response:
    async with _write_slot(request):
        cluster, rtype, body = await _write(request)
        rv, count = protocol.required_str(body, "resourceVersion"), protocol.required_int(body, "count")
        result = await _store(request, cluster.name).snapshot_end(
            cluster=cluster.name, rtype=rtype, snapshot_id=_snapshot_id(request), resource_version=rv,
            count=count)
        return ok({"deleted": result.deleted, "checkpoint": result.checkpoint})


async def post_changes(request: web.Request) -> web.Response:
    async with _write_slot(request):
        cluster, rtype, body = await _write(request)
        rv = protocol.required_str(body, "resourceVersion")
        after = body.get("after")
        if after is not None and not isinstance(after, str):
            raise BadInput("after must be a string")
        result = await _store(request, cluster.name).apply_batch(
            cluster=cluster.name, rtype=rtype, events=_list(body, "events"), resource_version=rv,
            after=after, keep_secret_data=cluster.keep_secret_data)
        return ok({"applied": result.applied, "checkpoint": result.checkpoint})


async def post_remove_type(request: web.Request) -> web.Response:
    async with _write_slot(request):
        cluster, rtype, _ = await _write(request)
        deleted = await _store(request, cluster.name).remove_type(cluster=cluster.name, rtype=rtype)
        return ok({"deleted": deleted})


# -- registry (admin) ----------------------------------------------------------------------------

def _admin(request: web.Request) -> None:
    offered = _bearer(request).encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(offered, request.app[ADMIN_TOKEN].encode()):
        raise RegistryError("invalid admin token", code=401, reason="Unauthorized")


async def admin_add(request: web.Request) -> web.Response:
    _admin(request)
    body = await _body(request)
    name, mode = protocol.required_str(body, "name"), body.get("mode")
    if mode not in ("push", "pull"):
        raise BadInput("mode must be 'push' or 'pull'")
    labels, settings = body.get("labels") or {}, body.get("settings") or {}
    if not isinstance(labels, dict) or not isinstance(settings, dict):
        raise BadInput("labels and settings must be objects")
    kubeconfig = body.get("kubeconfig")
    if kubeconfig is not None and not isinstance(kubeconfig, str):
        raise BadInput("kubeconfig must be the kubeconfig document as a string")
    token = await registry.add(request.app[POOL], name=name, mode=mode, kubeconfig=kubeconfig,
                               kubeconfigs=request.app[KUBECONFIGS], labels=labels, settings=settings)
    log.info("cluster registered", extra={"cluster": name, "mode": mode})
    if mode == "pull":
        request.app[PULL].poke()
    return web.Response(body=orjson.dumps({"name": name, "mode": mode, "token": token}), status=201,
                        content_type="application/json")


async def admin_list(request: web.Request) -> web.Response:
    _admin(request)
    return ok({"clusters": await registry.overview(request.app[POOL])})


async def admin_remove(request: web.Request) -> web.Response:
    _admin(request)
    name = request.match_info["cluster"]
    if await registry.get(request.app[POOL], name) is None:
        raise RegistryError(f"cluster {name!r} is not registered", code=404, reason="NotFound")
    deleted = await Store(request.app[POOL]).remove_cluster(cluster=name)
    request.app[PULL].poke()
    log.info("cluster removed", extra={"cluster": name, "objects_deleted": deleted})
    return ok({"name": name, "deleted": deleted})


def routes() -> list[web.RouteDef]:
    base = protocol.PREFIX + "/{cluster}"
    return [
        *health_routes(),
        web.get(base + "/checkpoints", get_checkpoints),
        web.post(base + "/snapshots", post_snapshot),
        web.post(base + "/snapshots/{snapshot}/pages", post_snapshot_page),
        web.post(base + "/snapshots/{snapshot}/end", post_snapshot_end),
        web.post(base + "/changes", post_changes),
        web.post(base + "/types/remove", post_remove_type),
        web.post("/admin/v1/clusters", admin_add),
        web.get("/admin/v1/clusters", admin_list),
        web.delete("/admin/v1/clusters/{cluster}", admin_remove),
    ]


def build_app(*, database_url: str, admin_token: str, kubeconfigs: registry.Kubeconfigs,
              pull: bool = True) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[errors_as_status])
    app[ADMIN_TOKEN] = admin_token
    app[KUBECONFIGS] = kubeconfigs
    app[GATE] = asyncio.Semaphore(WRITE_SLOTS)
    app.cleanup_ctx.append(pool_ctx(database_url, max_size=WRITE_SLOTS + 4))
    app.cleanup_ctx.append(PullManager.context(database_url=database_url, key=PULL, kubeconfigs=kubeconfigs,
                                               enabled=pull))
    app.add_routes(routes())
    return app
