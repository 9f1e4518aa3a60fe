"""The syncer's Prometheus metrics, served at ``/metrics`` on the ingest listener.

Two things a syncer under load can be slowed by, neither visible from the outside:

* writes in flight in the change log (``syncer.ingest``): from the moment a write draws
  its numbers to its commit, no reader of the change log passes below its numbers (the
  horizon), so watches wait for the slowest write in flight. The time writes spend in
  flight, beside the time of whole write transactions, says how long that is.
* the event loop: one loop serves every agent's requests and every pulled cluster's
  informers; a callback that holds it (decoding a large body, validating a page) delays
  all of them. ``LoopLag`` measures it by how late a periodic wake-up comes.

The pulled clusters' informers are the agent's code running in this process: their
counters (``agent.metrics``) are in the same registry and served here too.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, Histogram, generate_latest

from kube.tasks import STOP_TIMEOUT_S, stop_tasks

log = logging.getLogger(__name__)

# From a millisecond (a small write) to tens of seconds (a large snapshot page's merge).
_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0)
IN_FLIGHT = Histogram("kubepedia_change_log_in_flight_seconds",
                      "Time a write transaction was in flight in the change log, from drawing its numbers"
                      " to its commit or rollback (the horizon readers stop at waits for it)",
                      buckets=_SECONDS)
CONNECTION_WAIT = Histogram("kubepedia_store_connection_wait_seconds",
                            "Time a write waited for a connection of its pool", buckets=_SECONDS)
WRITE_TRANSACTION = Histogram("kubepedia_store_write_transaction_seconds",
                              "Time of a store write transaction, from its connection's taking to its end",
                              buckets=_SECONDS)
LOOP_LAG = Histogram("kubepedia_event_loop_lag_seconds",
                     "How late the event loop ran a periodic callback", buckets=_SECONDS)
LOOP_LAG_MAX = Gauge("kubepedia_event_loop_lag_max_seconds",
                     "The longest event-loop lag seen since the process started")

GC_PAUSE = Histogram("kubepedia_gc_pause_seconds",
                     "Time a cyclic garbage collection stopped every thread", ["generation"],
                     buckets=_SECONDS)

LAG_INTERVAL_S = 0.05  # often enough to see a 50 ms stall, cheap enough to run always


class LoopLag:
    """Measures the event loop's lag: a task sleeps ``interval`` seconds at a time and
    records how much later than asked it wakes up (time the loop spent on other work)."""

    def __init__(self, *, interval: float = LAG_INTERVAL_S,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.interval = interval
        self._clock = clock
        self.max = 0.0

    def record(self, lag: float) -> None:
        lag = max(lag, 0.0)
        LOOP_LAG.observe(lag)
        if lag > self.max:
            self.max = lag
            LOOP_LAG_MAX.set(lag)

    async def run(self) -> None:
        while True:
            asked = self._clock()
            await asyncio.sleep(self.interval)
            self.record(self._clock() - asked - self.interval)


class GcPauses:
    """Times the garbage collector's runs (``gc.callbacks``): a full collection walks every
    tracked object and holds the GIL throughout, so it shows as loop lag too; this says
    which part of the lag it is."""

    def __init__(self) -> None:
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            GC_PAUSE.labels(str(info["generation"])).observe(time.perf_counter() - self._started)


def loop_lag_ctx(*, interval: float = LAG_INTERVAL_S) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that measures the loop's lag, and the collector's pauses, while the
    application runs."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(LoopLag(interval=interval).run(), name="event-loop lag")
        pauses = GcPauses()
        gc.callbacks.append(pauses)
        try:
            yield
        finally:
            gc.callbacks.remove(pauses)
            await stop_tasks([task], timeout=STOP_TIMEOUT_S, log=log)

    return ctx


async def metrics(request: web.Request) -> web.Response:
    """The Prometheus text format. Rendering holds the loop for well under a millisecond:
    the registry has a few dozen series (no cluster label, so it does not grow with them)."""
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_routes() -> list[web.RouteDef]:
    return [web.get("/metrics", metrics)]
