"""Serving an aiohttp application on a free loopback port for a test (real HTTP)."""

from __future__ import annotations

import ssl
from typing import Any

from aiohttp import web


async def serve_app(app: web.Application, *, ssl_context: ssl.SSLContext | None = None,
                    **settings: Any) -> tuple[web.AppRunner, str]:
    """Start ``app`` on 127.0.0.1, port 0 (with ``ssl_context``, over TLS); returns its runner
    (clean it up) and base URL."""
    runner = web.AppRunner(app, handle_signals=False, **settings)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
