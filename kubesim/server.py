"""The aiohttp application and its lifecycle (start, restart, stop)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from kube.tasks import STOP_TIMEOUT_S, stop_tasks
from kubesim import discovery, tokenreview
from kubesim.churn import Churn
from kubesim.control import Control
from kubesim.errors import StatusError, method_not_allowed
from kubesim.faults import CONTROL_PREFIX, Faults
from kubesim.handlers import ResourceHandlers, json_response, not_found_path
from kubesim.openapi import openapi_routes
from kubesim.simulator import SimConfig, Simulator
from kubesim.tokenreview import TokenTable

log = logging.getLogger("kubesim")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SIM_KEY = web.AppKey("simulator", Simulator)
HANDLERS_KEY = web.AppKey("handlers", ResourceHandlers)


@web.middleware
async def status_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every StatusError as a Kubernetes ``Status`` body."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        exc = not_found_path()
        return json_response(exc.body(), exc.code)
    except web.HTTPMethodNotAllowed:
        exc = method_not_allowed()
        return json_response(exc.body(), exc.code)
    except StatusError as exc:
        response = json_response(exc.body(), exc.code)
        response.headers.update(exc.headers)
        return response


def fault_middleware(faults: Faults) -> Middleware:
    @web.middleware
    async def inject(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await handler(request)
        await faults.gate()
        failure = faults.discovery_failure(request.path) or faults.take_failure()
        if failure is not None:
            raise failure
        return await handler(request)

    return inject


def _discovery_routes(sim: Simulator) -> list[web.RouteDef]:
    def doc(body: object) -> web.Response:
        if body is None:
            raise not_found_path()
        return json_response(orjson.dumps(body))

    async def version(request: web.Request) -> web.Response:
        return doc(discovery.version_info())

    async def api(request: web.Request) -> web.Response:
        return doc(discovery.api_versions(request.host))

    async def core(request: web.Request) -> web.Response:
        return doc(discovery.resource_list(sim.registry, "", "v1"))

    async def apis(request: web.Request) -> web.Response:
        return doc(discovery.api_group_list(sim.registry))

    async def group(request: web.Request) -> web.Response:
        return doc(discovery.api_group(sim.registry, request.match_info["group"]))

    async def group_version(request: web.Request) -> web.Response:
        info = request.match_info
        return doc(discovery.resource_list(sim.registry, info["group"], info["version"]))

    return [
        web.get("/version", version),
        web.get("/api", api),
        web.get("/api/v1", core),
        web.get("/apis", apis),
        web.get("/apis/{group}", group),
        web.get("/apis/{group}/{version}", group_version),
    ]


class SimServer:
    """One listening kubesim: ``url``, ``sim`` (the in-process state), controls."""

    def __init__(
        self, sim: Simulator, host: str = "127.0.0.1", port: int = 0, *, seed: int = 0
    ) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self.faults = Faults()
        self.churn = Churn(sim.api, sim.registry, seed)
        self.handlers = ResourceHandlers(sim, self.faults)
        self.tokens = TokenTable()  # who TokenReview knows (kubesim.tokenreview)
        self.app = self._build_app()
        # No per-request access log: at thousands of requests per second it costs more
        # than the requests themselves.
        self.runner = web.AppRunner(
            self.app, handle_signals=False, shutdown_timeout=2.0, access_log=None
        )
        self.site: web.TCPSite | None = None
        self._restarts: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[status_errors, fault_middleware(self.faults)], client_max_size=64 << 20
        )
        app[SIM_KEY] = self.sim
        app[HANDLERS_KEY] = self.handlers
        control = Control(self.sim, self.faults, self.handlers, self.schedule_restart, self.churn)
        app.add_routes(control.routes())
        app.add_routes(tokenreview.routes(self.tokens))  # before the generic /apis/ routes
        app.add_routes(_discovery_routes(self.sim))
        app.add_routes(openapi_routes(self.sim))
        verbs = ("GET", "POST", "PUT", "PATCH", "DELETE")
        for verb in verbs:
            app.router.add_route(verb, "/api/v1/{tail:.+}", self.handlers.core)
            app.router.add_route(verb, "/apis/{group}/{version}/{tail:.+}", self.handlers.grouped)
        app.on_shutdown.append(self._close_watches)
        return app

    async def _close_watches(self, app: web.Application) -> None:
        # Long watch responses would otherwise hold graceful shutdown open.
        self.handlers.drop_watches()

    async def start(self) -> None:
        await self.runner.setup()
        await self._listen()
        log.info("kubesim %s listening on %s", self.sim.config.name, self.url)

    async def _listen(self) -> None:
        self.site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True)
        await self.site.start()
        server = self.site._server
        if self.port == 0 and isinstance(server, asyncio.base_events.Server):
            self.port = server.sockets[0].getsockname()[1]

    async def schedule_restart(self, down_seconds: float) -> None:
        task = asyncio.create_task(self.restart(down_seconds, delay=0.05))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def restart(self, down_seconds: float = 0.5, delay: float = 0.0) -> None:
        """Drop every connection, stop listening for ``down_seconds``, listen again."""
        await asyncio.sleep(delay)
        self.handlers.drop_watches()
        server = self.runner.server
        if server is not None:
            for connection in list(server.connections):
                connection.force_close()
        if self.site is not None:
            await self.site.stop()
        await asyncio.sleep(down_seconds)
        await self._listen()
        log.info("kubesim %s listening again on %s", self.sim.config.name, self.url)

    async def stop(self) -> None:
        await self.churn.stop()
        await stop_tasks(self._restarts, timeout=STOP_TIMEOUT_S, log=log)
        await self.runner.cleanup()


@asynccontextmanager
async def running(
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    generate: Mapping[str, int] | None = None,
    seed: int = 0,
    config: SimConfig | None = None,
) -> AsyncIterator[SimServer]:
    """Run a kubesim server for the duration of the block; yields the server."""
    from kubesim.clusters import running_clusters

    async with running_clusters(
        1, host, port=port, generate=generate, seed=seed, config=config
    ) as servers:
        yield servers[0]
