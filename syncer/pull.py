"""Pull mode: the syncer runs a cluster's informers itself, from its stored kubeconfig.

Several syncer processes may share one database. Each pull cluster is synced by exactly
one of them: the owner holds a session advisory lock on a connection of its own (never a
pooled one, whose recycling would release or leak it; DESIGN.md, "Advisory locks belong to
a connection"). Every write proves ownership inside its transaction (``syncer.guards.RegisteredOwner``),
so a process that lost its lock writes nothing more, even before it notices.

It notices at its next poll (every ``KUBEPEDIA_PULL_POLL_SECONDS``, default 2, it checks
each lock connection) or at once when a write is refused for want of the lock; either way
it stops the cluster's informers and closes the lock connection. A process that lost a
cluster this way (its lock connection was killed, e.g. by ``pg_terminate_backend`` or a
network cut, while the process lives) does not try to own it again for
``LOST_PAUSE_ROUNDS`` polls. A healthy peer, which finds the lock free at its next poll,
takes the cluster over; the process that lost it, likely to lose it again, does not race
it back. When an owner dies, PostgreSQL drops its connection and lock, and a peer takes
the cluster over at its next poll.

The connections are named in ``pg_stat_activity``: ``kubepedia-pull HOST:PID`` holds the
locks, ``kubepedia-pull-sync HOST:PID`` writes the clusters' objects, and
``kubepedia-pull-control HOST:PID`` reads the registry and reports health.

Stored kubeconfigs are opened through ``registry.Kubeconfigs`` and loaded without letting
them run commands or read local files unless the server allows it: a refused or unopenable
kubeconfig is reported in the cluster's health and never loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web

from agent.buffer import Budget
from agent.errors import KubeClientError
from agent.kubeclient import Connection, KubeClient, connection_from_document
from agent.kubeconfig_policy import KubeconfigRefused
from agent.runner import Runner
from agent.selection import SelectionError, parse_selection
from kube.metrics import scrape_hook
from kube.tasks import STOP_TIMEOUT_S, stop_tasks
from syncer import metrics, registry
from syncer.db import POOLS, connect, pool_context
from syncer.guards import RegisteredOwner
from syncer.ingest import FenceLost, Guard, Store, advisory_holder
from syncer.quota import Quota
from syncer.sink import UNAVAILABLE, StoreSink

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 2.0
POLL_ENV = "KUBEPEDIA_PULL_POLL_SECONDS"
LOST_PAUSE_ROUNDS = 3  # polls a process waits before owning again a cluster it lost
PULL_POOL_SIZE = 6
CONTROL_POOL_SIZE = 2
# Bytes of objects every pulled cluster together holds between its informers and the store.
# An agent bounds its own (``agent.buffer.Budget``, 16 MiB); one such budget per pulled
# cluster would add up with the clusters (100 clusters: 1.6 GB) while they all wait for the
# same few connections, which take pages no faster for more of them waiting.
PULL_IN_FLIGHT_BYTES = 64 * 1024 * 1024
LOCK_CHECK_TIMEOUT_S = 5.0
HEALTH_INTERVAL_S = 5.0
IDENTITY = f"{socket.gethostname()}:{os.getpid()}"


def poll_interval() -> float:
    """Seconds between reconcile rounds: ``$KUBEPEDIA_PULL_POLL_SECONDS`` or 2. A shorter
    poll lets peers take over a dead owner's clusters sooner, at one query per round."""
    value = os.environ.get(POLL_ENV, "")
    try:
        seconds = float(value) if value else POLL_INTERVAL_S
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        log.warning("ignoring a bad pull poll interval", extra={POLL_ENV: value, "using": POLL_INTERVAL_S})
        return POLL_INTERVAL_S
    return seconds


def ownership_key(cluster: str) -> int:
    """A positive 62-bit advisory-lock key for a cluster (its own key space by prefix)."""
    digest = hashlib.sha256(b"kubepedia/pull/" + cluster.encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 2


@dataclass(kw_only=True)
class _Owned:
    cluster: registry.Cluster
    lock_conn: asyncpg.Connection
    task: asyncio.Task[None] | None = None
    runner: Runner | None = None
    sink: StoreSink | None = None
    config_error: str | None = None  # the stored kubeconfig or selection cannot be used
    last_health: tuple[bool, str | None] | None = field(default=None)


class PullManager:
    """Owns and syncs the pull clusters this process can get; see the module docstring."""

    def __init__(self, *, database_url: str, pool: asyncpg.Pool, kubeconfigs: registry.Kubeconfigs,
                 poll_interval: float = POLL_INTERVAL_S, control_pool: asyncpg.Pool | None = None) -> None:
        self._url = database_url
        self._pool = pool  # the pulled clusters' writes
        # The manager's own queries (registry, ownership, health): never behind the writes.
        self._control = control_pool or pool
        self._kubeconfigs = kubeconfigs
        self._poll_interval = poll_interval
        self._owned: dict[str, _Owned] = {}
        self._paused: dict[str, float] = {}  # lost clusters -> loop time they may be owned again
        self.identity = IDENTITY
        self._wake = asyncio.Event()
        self._budget = Budget(PULL_IN_FLIGHT_BYTES)
        # Store calls under way for every pulled cluster together: as many as the connections
        # can take and as many again ready to follow (see ``StoreSink``).
        self._gate = asyncio.Semaphore(2 * PULL_POOL_SIZE)

    @staticmethod
    def context(*, database_url: str, key: web.AppKey[PullManager], kubeconfigs: registry.Kubeconfigs,
                enabled: bool) -> Callable[[web.Application], AsyncIterator[None]]:
        async def ctx(app: web.Application) -> AsyncIterator[None]:
            # A pool of its own: pulled clusters must not take the connections that admitted
            # agent requests are waiting for.
            # And one for the manager's own queries: with many clusters, their writes keep every
            # connection of theirs busy and queued for, and a reconcile round that waited its
            # turn for each owned cluster's health took minutes to own the next cluster.
            async with pool_context(database_url, min_size=1, max_size=PULL_POOL_SIZE,
                                    server_settings={"application_name": f"kubepedia-pull-sync {IDENTITY}"}
                                    ) as pool, \
                    pool_context(database_url, min_size=1, max_size=CONTROL_POOL_SIZE, server_settings={
                        "application_name": f"kubepedia-pull-control {IDENTITY}"}) as control:
                manager = PullManager(database_url=database_url, pool=pool, kubeconfigs=kubeconfigs,
                                      poll_interval=poll_interval(), control_pool=control)
                app[key] = manager
                task = asyncio.create_task(manager.run(), name="pull-manager") if enabled else None
                try:
                    with POOLS.watching("pull-sync", pool), \
                            POOLS.watching("pull-control", control), scrape_hook(manager.report):
                        yield
                finally:
                    if task is not None:
                        await stop_tasks([task], timeout=STOP_TIMEOUT_S, log=log)
                    await manager.stop_all()

        return ctx

    @property
    def owned(self) -> list[str]:
        return sorted(self._owned)

    async def report(self) -> None:
        """Pull mode's queues, for a scrape (``kube.metrics``)."""
        metrics.PULL_IN_FLIGHT.set(self._budget.used)
        metrics.PULL_OWNED.set(len(self._owned))

    def poke(self) -> None:
        """Reconcile now (a cluster was added or removed)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.reconcile()
            except UNAVAILABLE as exc:
                log.warning("pull mode: store unavailable", extra={"error": str(exc)})
            except Exception:
                # A bug in one round must not end pull mode for every cluster.
                log.exception("pull mode: reconcile failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            self._wake.clear()

    async def reconcile(self) -> None:
        wanted = {c.name: c for c in await registry.pull_clusters(self._control, self._kubeconfigs)}
        for name, owned in list(self._owned.items()):
            current = wanted.get(name)
            if current is None or current.kubeconfig != owned.cluster.kubeconfig:
                await self._release(name, why="unregistered" if current is None else "kubeconfig changed")
            elif owned.task is None or owned.task.done():
                await self._release(name, why="sync task ended")
            elif not await _lock_alive(owned.lock_conn):
                await self._release(name, why="ownership connection lost", lost=True)
            else:
                await self._report_health(owned)
        for name, cluster in wanted.items():
            if name not in self._owned and not self._pausing(name):
                await self._try_own(cluster)

    def _pausing(self, name: str) -> bool:
        until = self._paused.get(name)
        if until is not None and asyncio.get_running_loop().time() >= until:
            del self._paused[name]
            until = None
        return until is not None

    async def _try_own(self, cluster: registry.Cluster) -> None:
        key = ownership_key(cluster.name)
        if await advisory_holder(self._control, key) is not None:
            return
        conn = await connect(self._url, application_name=f"kubepedia-pull {self.identity}")
        got = False
        try:
            got = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
        finally:
            if not got:
                await conn.close()
        if not got:
            return
        owned = _Owned(cluster=cluster, lock_conn=conn)
        owned.task = asyncio.create_task(self._sync(owned, key=key, pid=conn.get_server_pid()),
                                         name=f"pull {cluster.name}")
        self._owned[cluster.name] = owned
        log.info("pull cluster owned", extra={"cluster": cluster.name})

    async def _sync(self, owned: _Owned, *, key: int, pid: int) -> None:
        name = owned.cluster.name
        try:
            # An allowed exec plugin runs a subprocess: keep it off the event loop.
            connection = await asyncio.to_thread(self._connection, owned.cluster)
            selection = parse_selection(owned.cluster.settings.get("selection") or {})
        except (KubeClientError, SelectionError) as exc:
            hint = registry.ALLOWANCE_HINT if isinstance(exc, KubeconfigRefused) else ""
            owned.config_error = f"configuration unusable: {exc}{hint}"
            log.error("pull cluster configuration unusable", extra={"cluster": name, "error": str(exc)})
            await asyncio.Event().wait()  # keep ownership; a new kubeconfig restarts us
            return
        # Either the registry setting or the cluster's selection may ask to keep Secret data.
        keep = owned.cluster.keep_secret_data or selection.keep_secret_data
        guards: list[Guard] = [RegisteredOwner(cluster=name, key=key, pid=pid)]
        store = Store(self._pool, guards=[_Noticed(guard=g, cluster=name, notice=self.poke) for g in guards],
                      quota=Quota.from_settings(owned.cluster.settings))
        sink = owned.sink = StoreSink(store=store, cluster=name, keep_secret_data=keep, gate=self._gate)
        async with KubeClient(connection=connection) as client:
            owned.runner = Runner(client=client, sink=sink,
                                  selection=selection.overridden(keep_secret_data=keep))
            owned.runner.budget = self._budget  # one bound for every pulled cluster, see above
            await owned.runner.run()

    def _connection(self, cluster: registry.Cluster) -> Connection:
        if cluster.kubeconfig is None:
            raise KubeClientError(cluster.kubeconfig_error or "no kubeconfig")
        return connection_from_document(cluster.kubeconfig, allow_local=self._kubeconfigs.allow_local)

    async def _report_health(self, owned: _Owned) -> None:
        health = (False, owned.config_error) if owned.config_error else _health(owned.runner)
        if health != owned.last_health:
            owned.last_health = health
            await registry.set_health(self._control, owned.cluster.name, healthy=health[0], message=health[1])
        elif health[0]:
            await registry.seen(self._control, owned.cluster.name)

    async def _release(self, name: str, *, why: str, lost: bool = False) -> None:
        owned = self._owned.pop(name)
        if owned.task is not None:
            await stop_tasks([owned.task], timeout=STOP_TIMEOUT_S, log=log)
        if owned.sink is not None:  # writes under way commit while the lock is still held
            await owned.sink.flush(timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(*UNAVAILABLE, asyncpg.PostgresError):
            await owned.lock_conn.close(timeout=2)
        extra: dict[str, Any] = {"cluster": name, "reason": why}
        if lost:  # leave it to a healthy peer; see the module docstring
            pause = LOST_PAUSE_ROUNDS * self._poll_interval
            self._paused[name] = asyncio.get_running_loop().time() + pause
            extra["retry_after_s"] = pause
        log.info("pull cluster released", extra=extra)

    async def stop_all(self) -> None:
        for name in list(self._owned):
            await self._release(name, why="shutting down")


@dataclass(frozen=True, kw_only=True, slots=True)
class _Noticed:
    """A guard that, when it refuses a write, wakes the manager: the lock or the
    registration is gone, and the cluster should be let go now, not at the next poll."""

    guard: Guard
    cluster: str
    notice: Callable[[], None]

    async def check(self, conn: asyncpg.Connection) -> None:
        try:
            await self.guard.check(conn)
        except FenceLost as exc:
            log.warning("pull cluster write refused", extra={"cluster": self.cluster, "error": str(exc)})
            self.notice()
            raise


def _health(runner: Runner | None) -> tuple[bool, str | None]:
    """Unhealthy when discovery never worked or every type is failing to reach the cluster."""
    if runner is None:
        return (False, "starting")
    statuses = runner.statuses()
    if not runner.discovered.is_set():
        why = f" ({runner.discovery_error})" if runner.discovery_error else ""
        return (False, _one_line(f"cluster unreachable: discovery has not succeeded yet{why}"))
    failing = [s for s in statuses.values() if s.get("phase") in ("backoff", "error")]
    if statuses and len(failing) == len(statuses):
        why = failing[0].get("last_error") or "all types failing"
        return (False, _one_line(f"cluster unreachable: {why}"))
    return (True, None)


def _one_line(message: str) -> str:
    """Health messages are shown as one table cell: whitespace runs (newlines too) become a space."""
    return " ".join(message.split())


async def _lock_alive(conn: asyncpg.Connection) -> bool:
    if conn.is_closed():
        return False
    try:
        await asyncio.wait_for(conn.fetchval("SELECT 1"), LOCK_CHECK_TIMEOUT_S)
    except (TimeoutError, *UNAVAILABLE, asyncpg.PostgresError):
        return False
    return True
