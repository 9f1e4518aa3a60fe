"""The read API's application (health now; the Kubernetes-compatible paths later)."""

from __future__ import annotations

from aiohttp import web

from syncer.store_app import health_routes, pool_ctx


def build_app(*, database_url: str) -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(pool_ctx(database_url, max_size=10))
    app.add_routes(health_routes())
    return app
