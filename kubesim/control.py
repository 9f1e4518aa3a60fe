"""Control endpoints under /_kubesim/ (not part of the Kubernetes API).

- ``POST /_kubesim/compact``: forget all history (older RVs then get 410).
- ``POST /_kubesim/drop-watches``: end every open watch.
- ``POST /_kubesim/stall?seconds=S``: hold API requests and watch delivery.
- ``POST /_kubesim/fail?count=N&code=C[&retryAfter=S]``: fail the next N API
  requests with C (429 and 503 carry Retry-After).
- ``POST /_kubesim/fail-discovery?groupVersion=GV[&code=C]``: the discovery
  document of one group-version (``apps/v1`` is ``/apis/apps/v1``, ``v1`` is
  ``/api/v1``) answers C (default 503, as for an aggregated API whose backend is
  down) until healed; ``/apis`` still lists the group and its resources still work.
  ``POST /_kubesim/heal-discovery[?groupVersion=GV]`` ends it (all, without GV).
- ``POST /_kubesim/restart[?downSeconds=S]``: close all connections, stop
  listening for a moment, listen again on the same port; state is kept.
- ``GET /_kubesim/stats`` (``POST /_kubesim/stats/reset``): request counts per
  verb and per verb and resource; every watch counts under ``watch``, and one
  that opens with synthetic ADDED events for every object also under
  ``watch-list`` (a list by another name); ``discoveryFailures`` counts the
  failures answered per groupVersion by ``fail-discovery``.
- ``GET /_kubesim/dump``: every object's identity and resourceVersion.
- ``POST /_kubesim/churn?rate=R[&seconds=S][&writes=N][&statusOnly=true][&record=true]``:
  write to this cluster's pods in-process, R times per second, for S seconds or N writes
  (or until changed; rate 0 stops), only status updates with ``statusOnly``, see
  :mod:`kubesim.churn`; ``GET /_kubesim/churn``: the rate, whether it runs, the writes
  made by operation and the failed ones. With ``record``, ``POST /_kubesim/churn/acks``
  takes the status updates made since the last take: ``[monotonic time, resourceVersion,
  namespace, name]`` each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from kubesim.churn import MAX_RATE, Churn
from kubesim.errors import bad_request
from kubesim.faults import Faults
from kubesim.handlers import ResourceHandlers
from kubesim.simulator import Simulator

Restarter = Callable[[float], Awaitable[None]]


def _json(data: object) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def _number(request: web.Request, name: str, default: float) -> float:
    try:
        return float(request.query.get(name, default))
    except ValueError:
        raise bad_request(f"{name} must be a number") from None


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false")
    if value not in ("true", "false"):
        raise bad_request(f"{name} must be true or false")
    return value == "true"


def _bounded(request: web.Request, name: str, high: float) -> float | None:
    """An optional number in [0, high]; NaN and infinities are refused too."""
    if name not in request.query:
        return None
    value = _number(request, name, 0.0)
    if not 0 <= value <= high:
        raise bad_request(f"{name} must be a number from 0 to {high:g}")
    return value


class Control:
    def __init__(
        self, sim: Simulator, faults: Faults, handlers: ResourceHandlers, restarter: Restarter,
        churn: Churn,
    ) -> None:
        self.sim = sim
        self.faults = faults
        self.handlers = handlers
        self.restarter = restarter
        self.churn = churn

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/_kubesim/compact", self.compact),
            web.post("/_kubesim/drop-watches", self.drop_watches),
            web.post("/_kubesim/stall", self.stall),
            web.post("/_kubesim/fail", self.fail),
            web.post("/_kubesim/fail-discovery", self.fail_discovery),
            web.post("/_kubesim/heal-discovery", self.heal_discovery),
            web.post("/_kubesim/restart", self.restart),
            web.get("/_kubesim/stats", self.stats),
            web.post("/_kubesim/stats/reset", self.reset_stats),
            web.get("/_kubesim/dump", self.dump),
            web.post("/_kubesim/churn", self.start_churn),
            web.get("/_kubesim/churn", self.churn_status),
            web.post("/_kubesim/churn/acks", self.churn_acks),
        ]

    async def compact(self, request: web.Request) -> web.Response:
        return _json({"compactedResourceVersion": str(self.sim.store.compact())})

    async def drop_watches(self, request: web.Request) -> web.Response:
        return _json({"dropped": self.handlers.drop_watches()})

    async def stall(self, request: web.Request) -> web.Response:
        seconds = _number(request, "seconds", 5.0)
        self.faults.stall(seconds)
        return _json({"stalledSeconds": seconds})

    async def fail(self, request: web.Request) -> web.Response:
        count = int(_number(request, "count", 1))
        code = int(_number(request, "code", 500))
        retry_after = int(_number(request, "retryAfter", 1))
        self.faults.fail_next(count, code, retry_after)
        return _json({"failing": count, "code": code})

    async def fail_discovery(self, request: web.Request) -> web.Response:
        group_version = request.query.get("groupVersion", "")
        if not group_version or group_version.strip("/") != group_version:
            raise bad_request("groupVersion is required, e.g. apps/v1 or v1")
        code = int(_number(request, "code", 503))
        if not 400 <= code <= 599:
            raise bad_request("code must be an HTTP error status (400-599)")
        self.faults.fail_discovery(group_version, code)
        return _json({"failingDiscovery": group_version, "code": code})

    async def heal_discovery(self, request: web.Request) -> web.Response:
        return _json({"healed": self.faults.heal_discovery(request.query.get("groupVersion"))})

    async def restart(self, request: web.Request) -> web.Response:
        await self.restarter(_number(request, "downSeconds", 0.5))
        return _json({"restarting": True})

    async def stats(self, request: web.Request) -> web.Response:
        data = self.sim.stats.as_json()
        data["resourceVersion"] = str(self.sim.store.rv)
        data["openWatches"] = len(self.handlers.watchers)
        data["discoveryFailures"] = dict(self.faults.discovery_failed)
        return _json(data)

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.sim.stats.reset()
        self.faults.discovery_failed.clear()
        return _json({"reset": True})

    async def dump(self, request: web.Request) -> web.Response:
        return _json({"resourceVersion": str(self.sim.store.rv), "objects": self.sim.dump()})

    async def start_churn(self, request: web.Request) -> web.Response:
        rate = _bounded(request, "rate", MAX_RATE)
        if rate is None:
            raise bad_request("rate is required (writes per second; 0 stops)")
        seconds = _bounded(request, "seconds", 366 * 86400.0)
        writes = _bounded(request, "writes", 1e12)
        await self.churn.start(
            rate, writes=None if writes is None else int(writes), seconds=seconds,
            status_only=_flag(request, "statusOnly"), record=_flag(request, "record"),
        )
        return _json(self.churn.status())

    async def churn_acks(self, request: web.Request) -> web.Response:
        dropped = self.churn.acks_dropped
        return _json({"acks": self.churn.take_acks(), "dropped": dropped})

    async def churn_status(self, request: web.Request) -> web.Response:
        return _json(self.churn.status())
