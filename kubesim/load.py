"""Load generator: realistic writes against a kubesim (or any) API server over HTTP.

Deterministic by seed: the sequence of operations and their payloads depends
only on the seed (server-assigned uids and timing aside). Writes mirror what
controllers do: Deployments own ReplicaSets own Pods (``ownerReferences`` with
``controller: true``), pods change status, get relabelled and are deleted,
Events are recorded, ConfigMaps are updated.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from kubesim import objects

JSON = dict[str, Any]
MERGE = {"Content-Type": "application/merge-patch+json"}
Op = Callable[[aiohttp.ClientSession], Awaitable[None]]


@dataclass
class LoadStats:
    creates: int = 0
    updates: int = 0
    deletes: int = 0
    errors: int = 0
    by_status: dict[int, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.creates + self.updates + self.deletes

    def as_json(self) -> JSON:
        return {
            "creates": self.creates,
            "updates": self.updates,
            "deletes": self.deletes,
            "errors": self.errors,
        }


def _core(namespace: str, plural: str, name: str = "") -> str:
    path = f"/api/v1/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def _apps(namespace: str, plural: str, name: str = "") -> str:
    path = f"/apis/apps/v1/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


class LoadGenerator:
    """Issues ``rate`` writes per second for a duration, up to ``concurrency`` at once."""

    def __init__(
        self,
        base_url: str,
        *,
        rate: float = 100.0,
        seed: int = 0,
        namespaces: int = 3,
        concurrency: int = 32,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.rate = rate
        self.rng = random.Random(seed)
        self.namespaces = [f"load-{n}" for n in range(namespaces)]
        self.concurrency = concurrency
        self.headers = headers or {}
        self.stats = LoadStats()
        self.pods: list[tuple[str, str]] = []
        self.replicasets: list[JSON] = []
        self.configmaps: list[tuple[str, str]] = []
        self._counter = 0

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        body: Any,
        headers: dict[str, str] | None = None, parse: bool = False,
    ) -> JSON | None:
        """Send one write; the response body is decoded only when ``parse`` asks."""
        data = orjson.dumps(body)
        hdrs = {"Content-Type": "application/json", **self.headers, **(headers or {})}
        async with session.request(method, self.base_url + path, data=data, headers=hdrs) as resp:
            raw = await resp.read()
            self.stats.by_status[resp.status] = self.stats.by_status.get(resp.status, 0) + 1
            if resp.status >= 300:
                self.stats.errors += 1
                return None
            result: JSON = orjson.loads(raw) if parse else {}
            return result

    def _name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}-{objects.suffix(self.rng)}{self._counter}"

    async def setup(self, session: aiohttp.ClientSession) -> None:
        for namespace in self.namespaces:
            await self._send(session, "POST", "/api/v1/namespaces", objects.make_namespace(namespace))

    def next_op(self) -> Op:
        """Pick the next operation; the choice and payload depend only on the seed."""
        roll = self.rng.random()
        if not self.replicasets or roll < 0.02:
            return self._op_deployment()
        if roll < 0.35 or len(self.pods) < 10:
            return self._op_create_pod()
        if roll < 0.75:
            return self._op_pod_status()
        if roll < 0.85:
            return self._op_delete_pod()
        if roll < 0.93:
            return self._op_event()
        return self._op_configmap()

    def _op_deployment(self) -> Op:
        namespace = self.rng.choice(self.namespaces)
        deploy = objects.make_deployment(self.rng, namespace, self._name("web"), 3)
        rs_seed = self.rng.random()

        async def run(session: aiohttp.ClientSession) -> None:
            created = await self._send(
                session, "POST", _apps(namespace, "deployments"), deploy, parse=True
            )
            if created is None:
                return
            rs_name = f"{created['metadata']['name']}-{objects.hex_id(random.Random(rs_seed), 10)}"
            rs = objects.make_replicaset(random.Random(rs_seed), namespace, rs_name, owner=created)
            made = await self._send(
                session, "POST", _apps(namespace, "replicasets"), rs, parse=True
            )
            self.stats.creates += 1 + (made is not None)
            if made is not None:
                self.replicasets.append(made)

        return run

    def _op_create_pod(self) -> Op:
        owner = self.rng.choice(self.replicasets) if self.replicasets else None
        namespace = owner["metadata"]["namespace"] if owner else self.rng.choice(self.namespaces)
        prefix = owner["metadata"]["name"] if owner else "pod"
        pod = objects.make_pod(self.rng, namespace, self._name(prefix), owner=owner)
        self.pods.append((namespace, pod["metadata"]["name"]))

        async def run(session: aiohttp.ClientSession) -> None:
            if await self._send(session, "POST", _core(namespace, "pods"), pod) is not None:
                self.stats.creates += 1

        return run

    def _op_pod_status(self) -> Op:
        namespace, name = self.rng.choice(self.pods)
        ready = self.rng.random() < 0.8
        patch = {
            "status": {
                "phase": "Running" if ready else "Pending",
                "podIP": f"10.244.{self.rng.randrange(256)}.{self.rng.randrange(1, 255)}",
            },
            "metadata": {"annotations": {"kubesim/load-tick": str(self._counter)}},
        }
        self._counter += 1

        async def run(session: aiohttp.ClientSession) -> None:
            status_path = _core(namespace, "pods", name) + "/status"
            if await self._send(session, "PATCH", status_path, patch, MERGE) is not None:
                self.stats.updates += 1

        return run

    def _op_delete_pod(self) -> Op:
        namespace, name = self.pods.pop(self.rng.randrange(len(self.pods)))

        async def run(session: aiohttp.ClientSession) -> None:
            if await self._send(session, "DELETE", _core(namespace, "pods", name), {}) is not None:
                self.stats.deletes += 1

        return run

    def _op_event(self) -> Op:
        namespace, name = self.rng.choice(self.pods)
        involved = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name}}
        event = objects.make_event(self.rng, namespace, self._name(name), involved)

        async def run(session: aiohttp.ClientSession) -> None:
            if await self._send(session, "POST", _core(namespace, "events"), event) is not None:
                self.stats.creates += 1

        return run

    def _op_configmap(self) -> Op:
        if self.configmaps and self.rng.random() < 0.7:
            namespace, name = self.rng.choice(self.configmaps)
            patch = {"data": {"tick": str(self._counter)}}
            self._counter += 1

            async def update(session: aiohttp.ClientSession) -> None:
                path = _core(namespace, "configmaps", name)
                if await self._send(session, "PATCH", path, patch, MERGE) is not None:
                    self.stats.updates += 1

            return update
        namespace = self.rng.choice(self.namespaces)
        cm = objects.make_configmap(self.rng, namespace, self._name("settings"))
        self.configmaps.append((namespace, cm["metadata"]["name"]))

        async def create(session: aiohttp.ClientSession) -> None:
            if await self._send(session, "POST", _core(namespace, "configmaps"), cm) is not None:
                self.stats.creates += 1

        return create

    async def run(self, duration: float, max_ops: int | None = None) -> LoadStats:
        """Set up namespaces, then write at ``rate`` per second for ``duration`` seconds
        (or until ``max_ops`` operations were issued)."""
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            await self.setup(session)
            await self._drive(session, duration, max_ops)
        return self.stats

    async def _drive(
        self, session: aiohttp.ClientSession, duration: float, max_ops: int | None
    ) -> None:
        limiter = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        issued = 0
        while (elapsed := time.monotonic() - start) < duration and issued != max_ops:
            ahead = issued / self.rate - elapsed
            if ahead > 0.005:  # sleep in slices: one timer per write costs too much
                await asyncio.sleep(ahead)
            await limiter.acquire()
            task = asyncio.create_task(self._guarded(self.next_op(), session, limiter))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            issued += 1
        await asyncio.gather(*tasks)

    async def _guarded(self, op: Op, session: aiohttp.ClientSession, limiter: asyncio.Semaphore) -> None:
        try:
            await op(session)
        except aiohttp.ClientError:
            self.stats.errors += 1
        finally:
            limiter.release()
