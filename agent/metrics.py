"""Prometheus metrics of the agent's pipelines, and the agent's own ``/metrics`` listener.

The counters are kept by the pipelines wherever they run: in ``kubepedia agent``, served on
``--metrics-listen`` (off unless given: the agent runs inside member clusters, where a port
is opened on purpose), and in the syncer's pull mode, whose listeners serve them with the
syncer's own. They carry the resource type, not the cluster: an agent syncs one cluster,
and the syncer counts per cluster itself (``syncer.metrics``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from prometheus_client import Counter, Gauge

from kube.metrics import metrics_routes

log = logging.getLogger(__name__)

EVENTS_SHIPPED = Counter("kubepedia_agent_events_shipped", "Changes acknowledged by the sink", ["resource"])
OBJECTS_SNAPSHOTTED = Counter(
    "kubepedia_agent_snapshot_objects", "Snapshot objects acknowledged by the sink", ["resource"]
)
BATCHES_REJECTED = Counter(
    "kubepedia_agent_batches_rejected", "Calls the sink refused as bad data", ["resource"]
)
BUFFER_OVERFLOWS = Counter(
    "kubepedia_agent_buffer_overflows",
    "Buffers dropped because the sink stayed busy or unavailable",
    ["resource"],
)
RELISTS = Counter("kubepedia_agent_relists", "Snapshots (relists) started, by resource type and cause"
                  " (agent.events.RelistReason)", ["resource", "reason"])
IN_FLIGHT = Gauge("kubepedia_agent_in_flight_bytes",
                  "Bytes of objects the agent holds until the syncer acknowledged them")
TYPES = Gauge("kubepedia_agent_resource_types", "Resource types the agent syncs")


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@asynccontextmanager
async def serving(host: str, port: int) -> AsyncIterator[str]:
    """``/metrics`` and ``/healthz`` on ``host:port`` for the block; yields the bound URL."""
    app = web.Application()
    app.add_routes([*metrics_routes(), web.get("/healthz", _healthz)])
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        address = f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{bound_host}:{bound_port}"
        log.info("listening", extra={"listener": "metrics", "address": address})
        yield f"http://{address}"
    finally:
        await runner.cleanup()
