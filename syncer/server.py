"""The ingest listener: agents push their clusters' changes here (see ``agent.protocol``).

Only the agent protocol, health checks and metrics (``syncer.metrics``) are served here; the
registry's admin API has a listener of its own (``syncer.admin``), so that opening this one to
agents in other networks exposes no registration. Every error is a Kubernetes ``Status``
(``syncer.status``). A write is authenticated before anything else, then admitted and bounded
as ``syncer.admission`` describes; a write refused as a whole (a malformed request, a quota)
is kept in the type's last error, where ``kubepedia cluster list`` shows it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from agent import protocol
from kube.resources import ResourceType
from syncer import metrics, registry
from syncer.admission import SERVER_SETTINGS, Limits, WriteSlots, bearer_token, read_body, too_large
from syncer.decoding import decode_body
from syncer.ingest import Registered, SnapshotLost, Store
from syncer.metrics import loop_lag_ctx, metrics_routes, sync_lag_ctx
from syncer.published import published_ctx
from syncer.pull import PullManager
from syncer.quota import Quota, QuotaExceeded
from syncer.retention import DEFAULT_RETENTION_S, retention_ctx
from syncer.sink import UNAVAILABLE
from syncer.status import Refused, errors_as_status, ok
from syncer.store_app import POOL, health_routes, pool_ctx
from syncer.validate import BadInput

log = logging.getLogger(__name__)

SLOTS = web.AppKey("slots", WriteSlots)
LIMITS = web.AppKey("limits", Limits)
PULL = web.AppKey("pull", PullManager)
KUBECONFIGS = web.AppKey("kubeconfigs", registry.Kubeconfigs)
__all__ = ["KUBECONFIGS", "LIMITS", "PULL", "SERVER_SETTINGS", "SLOTS", "Limits", "build_app"]


async def _cluster(request: web.Request) -> registry.Cluster:
    cluster = await registry.authenticate(request.app[POOL], cluster=request.match_info["cluster"],
                                          token=bearer_token(request))
    await registry.seen(request.app[POOL], cluster.name)
    return cluster


def _store(request: web.Request, cluster: registry.Cluster) -> Store:
    return Store(request.app[POOL], guards=[Registered(cluster=cluster.name)],
                 quota=Quota.from_settings(cluster.settings))


@dataclass(frozen=True, kw_only=True, slots=True)
class Write:
    cluster: registry.Cluster
    rtype: ResourceType
    body: dict[str, Any]
    store: Store


@asynccontextmanager
async def _write(request: web.Request) -> AsyncIterator[Write]:
    """Authenticate, take the cluster's slot, read the body, take a store slot, parse (off
    the event loop, ``syncer.decoding``); a refusal of the whole write is recorded in the
    type's last error."""
    cluster = await _cluster(request)
    with metrics.INGEST_IN_PROGRESS.track_inprogress():
        async with _admitted(request, cluster) as write:
            yield write


@asynccontextmanager
async def _admitted(request: web.Request, cluster: registry.Cluster) -> AsyncIterator[Write]:
    slots, limits = request.app[SLOTS], request.app[LIMITS]
    async with slots.cluster(cluster.name):
        raw = await read_body(request, limits)
        async with slots.store():
            body = await decode_body(raw)
            rtype = protocol.type_from_dict(body.get("type"))
            store = _store(request, cluster)
            async with _recorded(store, cluster=cluster.name, rtype=rtype):
                yield Write(cluster=cluster, rtype=rtype, body=body, store=store)


@asynccontextmanager
async def _recorded(store: Store, *, cluster: str, rtype: ResourceType) -> AsyncIterator[None]:
    try:
        yield
    except (BadInput, protocol.ProtocolError, QuotaExceeded, asyncpg.DataError, Refused) as exc:
        try:
            await store.record_error(cluster=cluster, rtype=rtype, message=f"request refused: {exc}")
        except (*UNAVAILABLE, asyncpg.PostgresError) as failed:  # the refusal still reaches the agent
            log.warning("could not record a refusal", extra={"cluster": cluster, "type": rtype.key,
                                                             "error": str(failed)})
        raise


def _list(body: dict[str, Any], key: str, *, required: bool = True) -> list[Any]:
    value = body.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise BadInput(f"{key} must be a list")
    if len(value) > protocol.MAX_ITEMS:
        raise too_large(f"{key}: {len(value)} items, over the limit of {protocol.MAX_ITEMS} per request")
    return value


def _checkpoint(body: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    value = protocol.required_str(body, key)
    if len(value) > protocol.MAX_CHECKPOINT_BYTES:
        raise Refused(422, "Invalid", f"{key} is {len(value)} characters, over the limit of"
                                      f" {protocol.MAX_CHECKPOINT_BYTES}")
    return value


def _snapshot_id(request: web.Request) -> int:
    value = request.match_info["snapshot"]
    if not value.isdigit() or len(value) > 18:
        raise SnapshotLost(f"unknown snapshot {value[:40]!r}")
    return int(value)


# -- agent protocol ------------------------------------------------------------------------------

async def get_checkpoints(request: web.Request) -> web.Response:
    cluster = await _cluster(request)
    return ok({"checkpoints": await _store(request, cluster).checkpoints(cluster=cluster.name)})


async def post_snapshot(request: web.Request) -> web.Response:
    async with _write(request) as w:
        with metrics.timed("snapshot_start"):
            snapshot_id = await w.store.snapshot_start(cluster=w.cluster.name, rtype=w.rtype)
        reason = metrics.relist_reason(w.body.get("reason"))
        metrics.relisted(cluster=w.cluster.name, rtype=w.rtype, reason=reason)
        return ok({"snapshot": str(snapshot_id)})


async def post_snapshot_page(request: web.Request) -> web.Response:
    async with _write(request) as w:
        items, omitted = _list(w.body, "items"), _list(w.body, "omitted", required=False)
        if len(items) + len(omitted) > protocol.MAX_ITEMS:
            raise too_large(f"{len(items) + len(omitted)} items, over the limit of {protocol.MAX_ITEMS}")
        with metrics.timed("snapshot_page"):
            result = await w.store.snapshot_page(
                cluster=w.cluster.name, rtype=w.rtype, snapshot_id=_snapshot_id(request), items=items,
                omitted=omitted, keep_secret_data=w.cluster.keep_secret_data)
        metrics.stored(cluster=w.cluster.name, rtype=w.rtype, objects=result.accepted - result.skipped)
        return ok({"accepted": result.accepted, "skipped": result.skipped})


async def post_snapshot_end(request: web.Request) -> web.Response:
    async with _write(request) as w:
        rv, count = _checkpoint(w.body, "resourceVersion"), protocol.required_int(w.body, "count")
        assert rv is not None
        with metrics.timed("snapshot_end"):
            result = await w.store.snapshot_end(
                cluster=w.cluster.name, rtype=w.rtype, snapshot_id=_snapshot_id(request), resource_version=rv,
                count=count)
        return ok({"deleted": result.deleted, "checkpoint": result.checkpoint})


async def post_changes(request: web.Request) -> web.Response:
    async with _write(request) as w:
        rv, after = _checkpoint(w.body, "resourceVersion"), _checkpoint(w.body, "after", required=False)
        with metrics.timed("changes"):
            result = await w.store.apply_batch(
                cluster=w.cluster.name, rtype=w.rtype, events=_list(w.body, "events"), resource_version=rv,
                after=after, keep_secret_data=w.cluster.keep_secret_data)
        metrics.stored(cluster=w.cluster.name, rtype=w.rtype, changes=result.applied)
        return ok({"applied": result.applied, "skipped": result.skipped, "checkpoint": result.checkpoint})


async def post_remove_type(request: web.Request) -> web.Response:
    async with _write(request) as w:
        with metrics.timed("remove_type"):
            deleted = await w.store.remove_type(cluster=w.cluster.name, rtype=w.rtype)
        return ok({"deleted": deleted})


async def admin_elsewhere(request: web.Request) -> web.Response:
    raise Refused(404, "NotFound", "no admin API on the ingest listener: it has a listener of its own"
                                   " (kubepedia serve --admin-listen, default 127.0.0.1:8082)")


def routes() -> list[web.RouteDef]:
    base = protocol.PREFIX + "/{cluster}"
    return [
        web.route("*", "/admin/{tail:.*}", admin_elsewhere),
        *health_routes(),
        *metrics_routes(),
        web.get(base + "/checkpoints", get_checkpoints),
        web.post(base + "/snapshots", post_snapshot),
        web.post(base + "/snapshots/{snapshot}/pages", post_snapshot_page),
        web.post(base + "/snapshots/{snapshot}/end", post_snapshot_end),
        web.post(base + "/changes", post_changes),
        web.post(base + "/types/remove", post_remove_type),
    ]


def build_app(*, database_url: str, kubeconfigs: registry.Kubeconfigs, pull: bool = True,
              limits: Limits | None = None, retention_s: float = DEFAULT_RETENTION_S) -> web.Application:
    """The ingest application; it also owns the pool and pull mode, which the admin
    application (``syncer.admin.build_admin_app``) borrows. Serve it with
    ``web.AppRunner(app, **SERVER_SETTINGS)``: it decompresses bodies itself."""
    limits = limits or Limits()
    app = web.Application(client_max_size=limits.max_body, middlewares=[errors_as_status])
    app[LIMITS] = limits
    app[KUBECONFIGS] = kubeconfigs
    app[SLOTS] = WriteSlots(limits=limits)
    app.cleanup_ctx.append(pool_ctx(database_url, max_size=limits.write_slots + 4))
    app.cleanup_ctx.append(PullManager.context(database_url=database_url, key=PULL, kubeconfigs=kubeconfigs,
                                               enabled=pull))
    app.cleanup_ctx.append(retention_ctx(retention_s=retention_s))
    app.cleanup_ctx.append(published_ctx())  # wherever writers run: replicas read it
    app.cleanup_ctx.append(loop_lag_ctx())
    app.cleanup_ctx.append(sync_lag_ctx(POOL))
    app.add_routes(routes())
    return app
