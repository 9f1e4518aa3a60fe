"""The syncer's Prometheus metrics, served at ``/metrics`` on the ingest listener.

Two things a syncer under load can be slowed by, neither visible from the outside:

* writes in flight in the change log (``syncer.ingest``): from the moment a write draws
  its numbers to its commit, no reader of the change log passes below its numbers (the
  horizon), so watches wait for the slowest write in flight. The time writes spend in
  flight, beside the time of whole write transactions, says how long that is.
* the event loop: one loop serves every agent's requests and every pulled cluster's
  informers; a callback that holds it (decoding a large body, validating a page) delays
  all of them. ``LoopLag`` measures it by how late a periodic wake-up comes.

And what ingest does, per cluster and resource type (both bounded: clusters by the
registry, types by each cluster's types quota, and counted only once a write of the type
committed): changes and snapshot objects stored, relists and their causes (the reason an
agent gives when it starts a snapshot, ``agent.events.RelistReason``), how long each kind
of write takes, the sync lag of each cluster (read from the store when scraped), the
connection pools' use and pull mode's queues. A removed cluster's series go with it
(``forget_cluster``).

The pulled clusters' informers are the agent's code running in this process: their
counters (``agent.metrics``) are in the same registry and served here too. The handler is
``kube.metrics``': every listener of the process serves the same registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Literal

import asyncpg
from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram

from agent.events import RELIST_REASONS
from kube.metrics import metrics_routes, scrape_hook
from kube.resources import ResourceType
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


# -- ingest ----------------------------------------------------------------------------------

Operation = Literal["changes", "snapshot_start", "snapshot_page", "snapshot_end", "remove_type"]

INGEST_EVENTS = Counter("kubepedia_ingest_events", "Watch changes stored, by cluster and resource type",
                        ["cluster", "resource"])
INGEST_OBJECTS = Counter("kubepedia_ingest_snapshot_objects",
                         "Objects of snapshot pages stored, by cluster and resource type",
                         ["cluster", "resource"])
RELISTS = Counter("kubepedia_ingest_relists", "Snapshots (relists) started, by cluster, resource type"
                  " and the cause the informer gave", ["cluster", "resource", "reason"])
INGEST_WRITE = Histogram("kubepedia_ingest_write_seconds",
                         "Time of an ingest write that committed, from its call to its commit, by kind",
                         ["operation"], buckets=_SECONDS)
INGEST_IN_PROGRESS = Gauge("kubepedia_ingest_requests_in_progress",
                           "Agent write requests authenticated and not yet answered (waiting ones too)")
SYNC_LAG = Gauge("kubepedia_sync_lag_seconds", "Time since the store last heard of a cluster's sync"
                 " (its newest change or checkpoint, by the database's clock)", ["cluster"])
PULL_IN_FLIGHT = Gauge("kubepedia_pull_in_flight_bytes",
                       "Bytes of objects pull mode's informers hold until the store has them")
PULL_WAITING = Gauge("kubepedia_pull_store_calls_waiting",
                     "Pull mode's store calls waiting for their turn (the shared gate)")
PULL_OWNED = Gauge("kubepedia_pull_clusters_owned", "Pull clusters this process syncs")
CHANGE_LOG_PRUNED = Counter("kubepedia_change_log_pruned",
                            "Change-log entries pruned past the retention period")
UNKNOWN_REASON = "unknown"


def relist_reason(value: object) -> str:
    """The cause an agent gave for a snapshot, as a label: one of ours, else ``unknown``
    (an older agent gives none; a hostile one must not invent label values)."""
    return value if isinstance(value, str) and value in RELIST_REASONS else UNKNOWN_REASON


@contextlib.contextmanager
def timed(operation: Operation) -> Iterator[None]:
    """Observe the block's time in ``INGEST_WRITE`` if it ends without an error."""
    started = time.perf_counter()
    yield
    INGEST_WRITE.labels(operation).observe(time.perf_counter() - started)


def stored(*, cluster: str, rtype: ResourceType, changes: int = 0, objects: int = 0) -> None:
    if changes:
        INGEST_EVENTS.labels(cluster, rtype.key).inc(changes)
    if objects:
        INGEST_OBJECTS.labels(cluster, rtype.key).inc(objects)


def relisted(*, cluster: str, rtype: ResourceType, reason: str) -> None:
    RELISTS.labels(cluster, rtype.key, reason).inc()


def forget_cluster(name: str) -> None:
    """Drop a removed cluster's series, so that they do not outlive it."""
    for metric in (INGEST_EVENTS, INGEST_OBJECTS, RELISTS, SYNC_LAG):
        metric.remove_by_labels({"cluster": name})


# Each cluster's newest word, over its types: a change (last_event_at) or a checkpoint, a
# snapshot start, an error (updated_at). Registered clusters only; by the database's clock.
_SYNC_LAG = """
SELECT s.cluster, extract(epoch FROM now() - max(greatest(s.last_event_at, s.updated_at)))::float8 AS lag
FROM sync_state s JOIN clusters c ON c.name = s.cluster
GROUP BY s.cluster
"""


async def refresh_sync_lag(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(_SYNC_LAG)
    SYNC_LAG.clear()  # a cluster removed by another process goes too
    for row in rows:
        SYNC_LAG.labels(row["cluster"]).set(max(row["lag"] or 0.0, 0.0))


def sync_lag_ctx(pool_key: web.AppKey[asyncpg.Pool]) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context (after the pool's) reading the sync lag at each scrape."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        pool = app[pool_key]
        with scrape_hook(lambda: refresh_sync_lag(pool)):
            yield

    return ctx


__all__ = ["LoopLag", "forget_cluster", "loop_lag_ctx", "metrics_routes", "relist_reason",
           "relisted", "stored", "sync_lag_ctx", "timed"]
