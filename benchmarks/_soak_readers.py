"""The soak benchmark's API readers: one process of asyncio tasks, as clients of the read API.

    python -m benchmarks._soak_readers CONFIG.json OUT.json

Runs until SIGTERM, then writes every read and every watcher's record to OUT.json and
exits. Readers loop over a mix of requests with a pause between them: paged lists (one
cluster and namespace, or all clusters, following ``continue``), label and field selector
lists, Clusterpedia searches (clusters, namespaces, orderby, withRemainingCount, fuzzy
names), GETs of pods seen in earlier searches (a 404 is a correct answer: churn deletes
pods) and deployment lists. Watchers hold long watches (see ``benchmarks._soak_account``
for what they record and how it is checked): after any disconnect they resume from their
last resourceVersion, after a 410 they list again.

Where the read API answers and how to call it is decided in ONE place, ``ApiAccess``: its
URL, an optional bearer token file and an optional CA file. ``ApiAccess.of_server`` fills
them from a ``kubepedia serve`` data dir: a ``read.token`` there is sent as the bearer
token, an ``api-tls.crt`` there means the API speaks HTTPS with that certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

READ_TOKEN_FILE = "read.token"  # what ``kubepedia serve`` leaves in its data dir for itself
API_CERT_FILE = "api-tls.crt"  # the read API's self-signed certificate, for clients
CHUNK = 1 << 16
RETRY_S = 0.5  # a watcher's pause before it calls again after a failure
LIST_PAGES_MAX = 3
WATCH_TIMEOUTS_S = (60, 300)  # each watch asks to end after a time in this range, as clients do
REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True, kw_only=True)
class ApiAccess:
    url: str
    token_file: str | None = None
    ca_file: str | None = None

    @classmethod
    def of_server(cls, data_dir: Path, port: int) -> ApiAccess:
        token = data_dir / READ_TOKEN_FILE
        cert = data_dir / API_CERT_FILE
        return cls(url=f"{'https' if cert.exists() else 'http'}://127.0.0.1:{port}",
                   token_file=str(token) if token.exists() else None,
                   ca_file=str(cert) if cert.exists() else None)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[aiohttp.ClientSession]:
        headers = {}
        if self.token_file:
            token = await asyncio.to_thread(Path(self.token_file).read_text)
            headers["Authorization"] = f"Bearer {token.strip()}"
        tls = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        connector = aiohttp.TCPConnector(limit=0, ssl=tls if tls is not None else True)
        async with aiohttp.ClientSession(base_url=self.url, headers=headers, connector=connector) as session:
            yield session


@dataclass(frozen=True, kw_only=True)
class WatchScope:
    """What a watcher watches: a type, in one cluster or all, one namespace or all."""

    group: str
    version: str
    resource: str
    cluster: str | None = None
    namespace: str | None = None

    @property
    def path(self) -> str:
        base = f"/clusters/{self.cluster}" if self.cluster else ""
        base += f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespace:
            base += f"/namespaces/{self.namespace}"
        return f"{base}/{self.resource}"


@dataclass(kw_only=True)
class WatchRecord:
    scope: WatchScope
    spans: list[tuple[int, int]] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    watches: int = 0
    relists: int = 0
    failures: int = 0  # watches that ended by an error or an ERROR event other than 410


@dataclass(frozen=True, kw_only=True)
class Config:
    access: ApiAccess
    clusters: list[str]
    namespaces: list[str]
    readers: int
    watchers: int
    think_s: float
    seed: int


def watch_scopes(config: Config, rng: random.Random) -> list[WatchScope]:
    """Mostly one namespace of one cluster (about 1/100 of the pod changes each), a few
    wider ones (every pod change of a cluster, of every cluster) and a few quiet types."""
    pods = {"group": "", "version": "v1", "resource": "pods"}
    wide = [WatchScope(**pods), WatchScope(**pods, cluster=config.clusters[0]),
            WatchScope(**pods, namespace=config.namespaces[0]),
            WatchScope(group="apps", version="v1", resource="deployments"),
            WatchScope(group="", version="v1", resource="configmaps", cluster=config.clusters[-1])]
    narrow = [WatchScope(**pods, cluster=rng.choice(config.clusters), namespace=rng.choice(config.namespaces))
              for _ in range(max(0, config.watchers - len(wide)))]
    return (wide + narrow)[:config.watchers]


class Readers:
    def __init__(self, config: Config, session: aiohttp.ClientSession) -> None:
        self.config, self.session = config, session
        self.reads: list[tuple[float, float, int, str]] = []
        self.names: list[tuple[str, str, str]] = []  # (cluster, namespace, name) of pods seen
        self.rng = random.Random(config.seed)

    async def get(self, path: str, kind: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
        """One read, recorded: its times, its status (0: no answer) and kind. Of a list of
        whole objects only the head is decoded (its metadata): decoding every page would
        make the readers' CPU the machine's bottleneck."""
        start = time.monotonic()
        status, body = 0, None
        try:
            async with self.session.get(path, params=params,
                                        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as resp:
                raw = await resp.read()
                status = resp.status
                body = _decoded(raw, whole=kind in ("search", "get")) if status == 200 else None
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            pass
        self.reads.append((start, time.monotonic(), status, kind))
        return status, body

    async def paged(self, path: str, kind: str, params: dict[str, str]) -> None:
        for _ in range(LIST_PAGES_MAX):
            status, body = await self.get(path, kind, params)
            if status != 200:
                return
            self.remember(path, body)
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                return
            params = {**params, "continue": token}

    def remember(self, path: str, body: Any) -> None:
        if "/pods" not in path:
            return
        for item in (body.get("items") or [])[:5]:
            meta = item.get("metadata") or {}
            cluster = (meta.get("annotations") or {}).get("kubepedia.io/cluster")
            if cluster:
                self.names.append((cluster, meta.get("namespace", ""), meta.get("name", "")))
        del self.names[:-500]

    async def one(self) -> None:
        """One request of the mix."""
        rng, cfg = self.rng, self.config
        cluster, namespace = rng.choice(cfg.clusters), rng.choice(cfg.namespaces)
        roll = rng.random()
        if roll < 0.25:
            await self.paged(f"/clusters/{cluster}/api/v1/namespaces/{namespace}/pods", "list",
                             {"limit": "50"})
        elif roll < 0.35:
            await self.paged("/api/v1/pods", "list-all", {"limit": "100"})
        elif roll < 0.50:
            tier = rng.choice(("web", "backend", "cache", "worker"))
            await self.paged(f"/api/v1/namespaces/{namespace}/pods", "labels",
                             {"labelSelector": f"tier={tier},app", "limit": "100"})
        elif roll < 0.60:
            await self.paged(f"/clusters/{cluster}/api/v1/pods", "fields",
                             {"fieldSelector": "status.phase=Pending", "limit": "100"})
        elif roll < 0.75:
            await self.search(cluster, namespace)
        elif roll < 0.92 and self.names:
            c, ns, name = rng.choice(self.names)
            await self.get(f"/clusters/{c}/api/v1/namespaces/{ns}/pods/{name}", "get")
        else:
            await self.paged("/apis/apps/v1/deployments", "deployments", {"limit": "100"})

    async def search(self, cluster: str, namespace: str) -> None:
        other = self.rng.choice(self.config.clusters)
        if self.rng.random() < 0.5:
            params = {"clusters": f"{cluster},{other}", "namespaces": namespace, "limit": "20",
                      "orderby": "created_at desc", "withRemainingCount": "true"}
        else:
            params = {"labelSelector": "internalstorage.clusterpedia.io/fuzzy-name=churn",
                      "clusters": cluster, "limit": "50", "onlyMetadata": "true"}
        await self.paged("/apis/clusterpedia.io/v1beta1/resources/api/v1/pods", "search", params)

    async def reader(self) -> None:
        await asyncio.sleep(self.rng.uniform(0, self.config.think_s))  # spread the starts
        while True:
            await self.one()
            await asyncio.sleep(self.config.think_s * self.rng.uniform(0.5, 1.5))


def _decoded(raw: bytes, *, whole: bool) -> Any:
    """The answer, or for a list only its head: the items follow the metadata."""
    cut = -1 if whole else raw.find(b',"items":')
    return orjson.loads(raw if cut < 0 else raw[:cut] + b"}")


class Watcher:
    def __init__(self, record: WatchRecord, readers: Readers, rng: random.Random) -> None:
        self.record, self.session, self.rng = record, readers.session, rng
        self.reads = readers.reads  # each watch's opening is a read too (its status counts)
        self.start = self.position = -1

    async def list_version(self) -> int:
        """The resourceVersion of a list of the scope (only its first page is read: the
        watch resumes from it, which is what the check needs)."""
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, KeyError,
                                     ValueError):
                async with self.session.get(self.record.scope.path, params={"limit": "1"}) as resp:
                    if resp.status == 200:
                        return int(orjson.loads(await resp.read())["metadata"]["resourceVersion"])
            await asyncio.sleep(RETRY_S)

    def close_span(self) -> None:
        if self.start >= 0:
            self.record.spans.append((self.start, self.position))
        self.start = -1

    async def run(self) -> None:
        try:
            while True:
                if self.start < 0:
                    self.start = self.position = await self.list_version()
                expired = await self.watch_once()
                if expired:
                    self.record.relists += 1
                    self.close_span()
        finally:
            self.close_span()

    async def watch_once(self) -> bool:
        """One watch from the position; True when it answered 410 Gone."""
        self.record.watches += 1
        opened, status = time.monotonic(), 0
        params = {"watch": "true", "resourceVersion": str(self.position), "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(self.rng.randint(*WATCH_TIMEOUTS_S))}
        try:
            async with self.session.get(self.record.scope.path, params=params,
                                        timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
                status = resp.status
                self.reads.append((opened, time.monotonic(), status, "watch"))
                if resp.status == 410:
                    return True
                if resp.status != 200:
                    raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                buffer = b""
                async for chunk in resp.content.iter_chunked(CHUNK):
                    *lines, buffer = (buffer + chunk).split(b"\n")
                    for line in lines:
                        if line and self.event(orjson.loads(line)):
                            return True
            return False
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            if not status:  # no answer at all
                self.reads.append((opened, time.monotonic(), 0, "watch"))
            self.record.failures += 1
            await asyncio.sleep(RETRY_S)
            return False

    def event(self, event: dict[str, Any]) -> bool:
        """Note one event; True for an ERROR that says the position expired."""
        obj = event.get("object") or {}
        if event.get("type") == "ERROR":
            if obj.get("code") == 410:
                return True
            raise aiohttp.ClientPayloadError(f"watch error event: {obj.get('message')}")
        seq = int(obj["metadata"]["resourceVersion"])
        if event["type"] != "BOOKMARK":
            self.record.seen.append(seq)
        self.position = seq
        return False


async def run(config: Config, out: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    rng = random.Random(config.seed + 1)
    records = [WatchRecord(scope=scope) for scope in watch_scopes(config, rng)]
    async with config.access.session() as session:
        readers = Readers(config, session)
        tasks = [asyncio.create_task(readers.reader()) for _ in range(config.readers - len(records))]
        tasks += [asyncio.create_task(Watcher(r, readers, random.Random(rng.random())).run())
                  for r in records]
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    result = {"reads": readers.reads, "watchers": [asdict(r) for r in records],
              "cpu_s": time.process_time()}
    await asyncio.to_thread(out.write_bytes, orjson.dumps(result))


def main() -> None:
    raw = orjson.loads(Path(sys.argv[1]).read_bytes())
    config = Config(**{**raw, "access": ApiAccess(**raw["access"])})
    asyncio.run(run(config, Path(sys.argv[2])))


if __name__ == "__main__":
    main()
