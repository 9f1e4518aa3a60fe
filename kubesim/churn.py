"""Churn: the writes a busy cluster makes to its own pods, made in-process at a set rate.

In a real cluster most watch events come from inside it: kubelets report pod status,
ReplicaSet controllers replace pods. A kubesim cluster can make such writes itself
(``kubesim serve --churn R``, ``POST /_kubesim/churn?rate=R``) through the same write
path as API requests (:class:`~kubesim.api.Api`), so resourceVersions, history and
watch events are exactly those of the same writes over HTTP, without an HTTP client
per cluster: a hundred clusters in one process can each change at their own pace, and
watch delivery can be measured apart from the cost of HTTP writes.

Every churn write changes exactly one pod (a status update carries a new tick, so none
is a no-op), so each successful write is one event for a watcher of all pods. The mix
keeps the number of pods about level: as many pods are created (copies of live pods,
as a ReplicaSet would make them) as are deleted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from kube.resources import ResourceType
from kube.tasks import STOP_TIMEOUT_S, stop_tasks
from kubesim import objects
from kubesim.api import Api
from kubesim.errors import StatusError
from kubesim.resources import Registry
from kubesim.store import TypeStore

log = logging.getLogger("kubesim.churn")
JSON = dict[str, Any]
MERGE = "application/merge-patch+json"
# Writes happen in slices at least this far apart: a timer per write would cost more
# than the write, and watchers woken once per slice send its events in one chunk.
TICK_S = 0.005
# A slice catching up after the loop was busy writes at most this much time's worth.
CATCH_UP_S = 0.05
CREATE_SHARE, DELETE_SHARE = 0.15, 0.15  # the rest are status updates
MAX_RATE = 1_000_000.0
# Writes remembered for a freshness measurement, at most (about 100 bytes each); the rest
# are counted as dropped, so a reader knows its record is partial.
ACKS_CAP = 1_000_000

# A recorded write: when it was acknowledged (time.monotonic(), one clock for every process
# on the machine), the resourceVersion it made, the pod's namespace and name.
Ack = tuple[float, int, str, str]


async def run_paced(
    rate: float, step: Callable[[int], None], *, writes: int | None = None,
    seconds: float | None = None,
) -> int:
    """Call ``step(n)`` with the number of writes due, ``rate`` per second on average, in
    slices at least ``TICK_S`` apart, until ``writes`` were made or ``seconds`` passed
    (both None: until cancelled). Returns the number of writes made."""
    started = time.monotonic()
    done = 0
    burst = max(1, int(rate * CATCH_UP_S))
    while writes is None or done < writes:
        elapsed = time.monotonic() - started
        if seconds is not None and elapsed >= seconds:
            break
        due = min(int(elapsed * rate) + 1 - done, burst)
        if writes is not None:
            due = min(due, writes - done)
        if due > 0:
            step(due)
            done += due
        await asyncio.sleep(max(done / rate - (time.monotonic() - started), TICK_S))
    return done


def _report(task: asyncio.Task[int]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("churn stopped by an error", exc_info=task.exception())


class Churn:
    """One cluster's in-process writer: status updates, deletions and replacements of
    pods, chosen by a seeded generator."""

    def __init__(self, api: Api, registry: Registry, seed: int = 0) -> None:
        self.api = api
        pods = registry.by_key("pods")
        assert pods is not None
        self.pods: ResourceType = pods
        self.rng = random.Random(seed)
        self.rate = 0.0
        self.counts: Counter[str] = Counter()
        self.errors = 0
        self._tick = 0
        self._task: asyncio.Task[int] | None = None
        self.status_only = False
        self._acks: list[Ack] | None = None
        self.acks_dropped = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(
        self, rate: float, *, writes: int | None = None, seconds: float | None = None,
        status_only: bool = False, record: bool = False,
    ) -> None:
        """Write ``rate`` times per second (replacing any churn under way; 0 stops).

        ``status_only``: every write is a status update, so the set of pods stays as it is.
        ``record``: remember each status update's acknowledgement (``take_acks``), as a
        client timing its writes would, without a client's CPU on the machine measured."""
        await self.stop()
        self.rate = rate
        self.status_only = status_only
        self._acks = [] if record else None
        self.acks_dropped = 0
        if rate > 0:
            self._task = asyncio.create_task(
                run_paced(rate, self.write, writes=writes, seconds=seconds),
                name=f"kubesim churn at {rate}/s",
            )
            self._task.add_done_callback(_report)

    async def stop(self) -> None:
        if self._task is not None:
            await stop_tasks({self._task}, timeout=STOP_TIMEOUT_S, log=log)
            self._task = None

    def status(self) -> JSON:
        return {
            "rate": self.rate,
            "running": self.running,
            "writes": sum(self.counts.values()),
            "byOperation": dict(self.counts),
            "errors": self.errors,
            "statusOnly": self.status_only,
            "recording": self._acks is not None,
            "acksDropped": self.acks_dropped,
        }

    def take_acks(self) -> list[Ack]:
        """The writes recorded since the churn started or since the last take."""
        taken = self._acks or []
        if self._acks is not None:
            self._acks = []
        return taken

    def write(self, count: int = 1) -> None:
        """Make ``count`` writes now."""
        tstore = self.api.tstore(self.pods)
        for _ in range(count):
            roll = self.rng.random()
            try:
                if self.status_only and tstore.keys:
                    self._update_status(tstore)
                    self.counts["status"] += 1
                elif len(tstore.keys) < 2 or roll < CREATE_SHARE:
                    self._create(tstore)
                    self.counts["create"] += 1
                elif roll < CREATE_SHARE + DELETE_SHARE:
                    self._delete(tstore)
                    self.counts["delete"] += 1
                else:
                    self._update_status(tstore)
                    self.counts["status"] += 1
            except StatusError:
                # A namespace deleted under the pods it would copy, a name taken: like
                # a controller's failed write, it changes nothing and is counted.
                self.errors += 1

    def _pick(self, tstore: TypeStore) -> str:
        return tstore.keys[self.rng.randrange(len(tstore.keys))]

    def _update_status(self, tstore: TypeStore) -> None:
        entry = tstore.objects[self._pick(tstore)]
        self._tick += 1
        running = self.rng.random() < 0.9
        patch = {
            "metadata": {"annotations": {"kubesim/churn-tick": str(self._tick)}},
            "status": {
                "phase": "Running" if running else "Pending",
                "podIP": f"10.244.{self.rng.randrange(256)}.{self.rng.randrange(1, 255)}",
            },
        }
        written = self.api.patch(self.pods, entry.namespace, entry.name, MERGE, patch, "status")
        if self._acks is not None:
            if len(self._acks) < ACKS_CAP:
                self._acks.append((time.monotonic(), written.rv, written.namespace, written.name))
            else:
                self.acks_dropped += 1

    def _delete(self, tstore: TypeStore) -> None:
        entry = tstore.objects[self._pick(tstore)]
        self.api.delete(self.pods, entry.namespace, entry.name)

    def _create(self, tstore: TypeStore) -> None:
        """A copy of a live pod under a new name, as its ReplicaSet makes a replacement
        (a fresh pod in ``default`` when there is none to copy)."""
        self._tick += 1
        if tstore.keys:
            body: JSON = orjson.loads(tstore.objects[self._pick(tstore)].raw)
            meta = body["metadata"]
            for generated in ("uid", "resourceVersion", "creationTimestamp", "generation"):
                meta.pop(generated, None)
            owners = meta.get("ownerReferences") or [{"name": "churn"}]
            meta["name"] = f"{owners[0]['name']}-churn{self._tick}"
        else:
            body = objects.make_pod(self.rng, "default", f"churn-{self._tick}")
        self.api.create(self.pods, body["metadata"]["namespace"], body)
