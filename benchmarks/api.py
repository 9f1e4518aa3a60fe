"""The aggregated read API at scale: kubectl-shaped queries over every cluster's pods.

    python -m benchmarks.api [--objects N --clusters C]

On a fresh embedded PostgreSQL, N pods (default 1,000,000) in C clusters (default 100)
are loaded through the ingest core (snapshots, as agents send them). Ten of the clusters
are real kubesim processes, listed and ingested as pull mode would; the others are copies
of their pods under other names, so every cluster looks alike. The read API runs as its
own process. Then, with p50/p99 over repeated requests (client-side, HTTP):

- ``ns_list``: one namespace across all clusters, limit 500;
- ``label_list``: ``app=<one app>`` across all clusters, limit 500;
- ``field_list``: ``spec.nodeName=<one node>`` across all clusters, limit 500;
- ``get``: one pod by name in one cluster;
- ``full_walk_s``: every pod in pages of 500; the baseline ``offset_walk_s`` walks the
  same table with LIMIT/OFFSET in SQL (as Clusterpedia pages). OFFSET costs grow with the
  depth, so it is timed on pages spread evenly over the walk and the mean is multiplied
  by the number of pages (the SQL alone, no HTTP or JSON: it flatters the baseline);
- ``fanout_label``: the label query sent in parallel to the ten kubesim servers and
  merged, as a dashboard without kubepedia would; ``label_vs_fanout`` compares kubepedia
  answering the same query for the same ten clusters (``clusters=``);
- ``watch_delivery``: 100 open watches (five per namespace, all clusters) while changes
  are committed at 500/s; latency from commit to receipt;
- ``api_rss_mb``: the API process's peak RSS.

Progress goes to stderr; the last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from apiserver.query import EVERYTHING_SCOPE, Target, compiled, list_statement
from benchmarks._procs import Procs, log, peak_rss_mb, read_until
from kube.resources import ResourceType
from kube.selectors import parse_field_selector, parse_label_selector
from syncer import embedded
from syncer.db import connect, create_pool
from syncer.ingest import Store
from syncer.migrations import migrate

PODS = ResourceType(group="", version="v1", resource="pods", kind="Pod", namespaced=True)
PAGE = 500
SIMS = 10
REPEATS = 60
QUERY_REPEATS = 200  # p99 of 200 is the second slowest, not the single slowest
LOADERS = 3
OFFSET_SAMPLES = 12  # deep OFFSETs take tens of seconds each at 1M objects
WATCHES = 100
WATCH_RATE = 500
WATCH_SECONDS = 20
SCAN_SETTINGS = ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan")
TOKEN_ENV = "KUBEPEDIA_BENCH_TOKEN"  # how the API process learns the one token it accepts
TOKEN = secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def start_sims(procs: Procs, generate: str, count: int = SIMS) -> list[str]:
    """``count`` kubesim servers, each populated by ``--generate`` with a seed of its own."""
    urls = []
    for i in range(count):
        proc = await procs.start(f"sim-{i}", "-m", "kubesim", "serve", "--port", "0", "--name", f"sim-{i}",
                                 "--seed", str(i + 1), "--generate", generate, stdout_pipe=True)
        urls.append((await read_until(proc, "serving on ", 300)).split()[0])
        asyncio.get_running_loop().create_task(_drain(proc))
    return urls


async def _drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    while await proc.stdout.read(65536):
        pass


async def list_all(session: aiohttp.ClientSession, url: str,
                   path: str = "/api/v1/pods") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params = {"limit": "1000"}
    while True:
        async with session.get(url + path, params=params) as resp:
            body = orjson.loads(await resp.read())
        items += body["items"]
        token = body["metadata"].get("continue")
        if not token:
            return items
        params = {"limit": "1000", "continue": token}


def clone(pods: list[dict[str, Any]], cluster: int) -> Iterator[dict[str, Any]]:
    for i, pod in enumerate(pods):
        meta = {**pod["metadata"], "uid": f"{cluster:03d}-{i}", "resourceVersion": str(i + 1)}
        yield {**pod, "metadata": meta}


async def ingest(store: Store, cluster: str, items: Iterator[dict[str, Any]],
                 rtype: ResourceType = PODS) -> int:
    """One snapshot of ``rtype`` in ``cluster``, in pages of PAGE, as an agent sends it."""
    count = 0
    async with store.snapshot(cluster=cluster, rtype=rtype) as snap:
        page: list[dict[str, Any]] = []
        for item in items:
            page.append(item)
            if len(page) == PAGE:
                await snap.add(page)
                count += len(page)
                page = []
        if page:
            await snap.add(page)
            count += len(page)
        await snap.end("1")
    return count


async def templates_of(sims: list[str]) -> list[list[dict[str, Any]]]:
    async with aiohttp.ClientSession() as session:
        return [await list_all(session, url) for url in sims]


async def load(pool: asyncpg.Pool, templates: list[list[dict[str, Any]]], *, clusters: int,
               per_cluster: int) -> None:
    """Every cluster's snapshot through the ingest core, LOADERS at a time."""
    store = Store(pool)
    gate = asyncio.Semaphore(LOADERS)
    done = 0

    async def one(i: int) -> None:
        nonlocal done
        name = f"c-{i:03d}"
        items = iter(templates[i]) if i < SIMS else clone(templates[i % SIMS][:per_cluster], i)
        async with gate:
            await pool.execute("INSERT INTO clusters (name, mode) VALUES ($1, 'push')", name)
            await ingest(store, name, items)
        done += 1
        if done % 10 == 0:
            log(f"loaded {done} clusters")

    await asyncio.gather(*(one(i) for i in range(clusters)))
    await pool.execute("ANALYZE resources")


async def plans(pool: asyncpg.Pool, *, namespace: str, app: str, node: str, name: str,
                ten: frozenset[str], one: str) -> dict[str, str]:
    """The plan PostgreSQL picks for each measured query, as the API composes it: the index
    (or the scan) at its root, outermost first. A sequential scan fails the run."""
    pods = Target(group="", version="v1", resource="pods", kind="Pod")
    labels, fields = parse_label_selector(f"app={app}"), parse_field_selector(f"spec.nodeName={node}", "Pod")
    targets = {
        "ns_list": (dataclasses.replace(pods, namespace=namespace), None),
        "label_list": (dataclasses.replace(pods, labels=labels), None),
        "label_ten": (dataclasses.replace(pods, labels=labels, clusters=ten), None),
        "field_list": (dataclasses.replace(pods, fields=fields), None),
        "get": (dataclasses.replace(pods, cluster=one, namespace=namespace, name=name), None),
        "walk_page": (pods, (namespace, name, "c-050")),
    }
    found: dict[str, str] = {}
    async with pool.acquire() as conn:
        for key, (target, after) in targets.items():
            sql, params = compiled(list_statement(target, EVERYTHING_SCOPE, limit=PAGE + 1, after=after))
            plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *params)  # decoded by the pool
            nodes = scans(plan[0]["Plan"])
            found[key] = "; ".join(nodes)
            log(f"plan {key}: {found[key]}")
            assert not any(n.startswith("Seq Scan") for n in nodes), (key, nodes)
    return found


def scans(node: dict[str, Any]) -> list[str]:
    """The scans of a plan (each with its index or table) and its sorts, outermost first."""
    here = [f"{node['Node Type']} {node.get('Index Name', node.get('Relation Name', ''))}".strip()]
    if "Scan" not in node["Node Type"]:
        here = [node["Node Type"]] if node["Node Type"] in ("Sort", "Incremental Sort") else []
    return here + [n for child in node.get("Plans", []) for n in scans(child)]


async def timed(session: aiohttp.ClientSession, url: str, params: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    async with session.get(url, params=params) as resp:
        await resp.read()
        assert resp.status == 200, (url, params, resp.status)
    return (time.perf_counter() - start) * 1000


async def latencies(session: aiohttp.ClientSession, url: str, params_of: Any) -> list[float]:
    # One untimed request first: the query's index pages come from disk once, after which a
    # serving database keeps them cached; the figures are for that steady state.
    await timed(session, url, params_of(0))
    return [await timed(session, url, params_of(i)) for i in range(QUERY_REPEATS)]


async def full_walk(session: aiohttp.ClientSession, api: str) -> tuple[float, int]:
    start, count = time.perf_counter(), 0
    params = {"limit": str(PAGE)}
    while True:
        async with session.get(api + "/api/v1/pods", params=params) as resp:
            body = orjson.loads(await resp.read())
        count += len(body["items"])
        token = body["metadata"].get("continue")
        if not token:
            return time.perf_counter() - start, count
        params = {"limit": str(PAGE), "continue": token}


async def offset_walk(pool: asyncpg.Pool, total: int) -> float:
    pages = (total + PAGE - 1) // PAGE
    sample = [int(k * (pages - 1) / (OFFSET_SAMPLES - 1)) for k in range(OFFSET_SAMPLES)]
    times = []
    async with pool.acquire() as conn:
        for page in sample:
            start = time.perf_counter()
            await conn.fetch("SELECT object::text FROM resources WHERE grp = '' AND resource = 'pods'"
                             " ORDER BY namespace, name, cluster LIMIT $1 OFFSET $2", PAGE, page * PAGE)
            times.append(time.perf_counter() - start)
    return statistics.mean(times) * pages


async def fanout(session: aiohttp.ClientSession, sims: list[str], app: str) -> float:
    start = time.perf_counter()

    async def one(url: str) -> list[dict[str, Any]]:
        async with session.get(url + "/api/v1/pods", params={"labelSelector": f"app={app}",
                                                             "limit": str(PAGE)}) as resp:
            return list(orjson.loads(await resp.read())["items"])

    merged = [item for items in await asyncio.gather(*(one(u) for u in sims)) for item in items]
    merged.sort(key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
    del merged[PAGE:]
    return (time.perf_counter() - start) * 1000


async def watch_delivery(pool: asyncpg.Pool, api: str, templates: list[list[dict[str, Any]]]) -> list[float]:
    """Commit MODIFIED events at WATCH_RATE; each carries its commit time in an annotation."""
    store = Store(pool)
    received: list[float] = []
    sent_at: dict[str, float] = {}
    rv = await pool.fetchval("SELECT change_log_horizon()")
    namespaces = sorted({p["metadata"]["namespace"] for p in templates[0]})
    ready = asyncio.Event()
    opened = 0

    async def watcher(session: aiohttp.ClientSession, namespace: str) -> None:
        nonlocal opened
        async with session.get(f"{api}/api/v1/namespaces/{namespace}/pods",
                               params={"watch": "1", "resourceVersion": str(rv)}) as resp:
            opened += 1
            if opened == WATCHES:
                ready.set()
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                now = time.perf_counter()
                for line in lines:
                    event = orjson.loads(line)
                    mark = event["object"]["metadata"].get("annotations", {}).get("bench/mark")
                    if mark in sent_at:
                        received.append((now - sent_at[mark]) * 1000)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None), headers=AUTH) as session:
        tasks = [asyncio.create_task(watcher(session, namespaces[i % len(namespaces)]))
                 for i in range(WATCHES)]
        await asyncio.wait_for(ready.wait(), 60)
        pods = templates[0]
        batch = max(WATCH_RATE // 50, 1)  # a commit every 20 ms
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < WATCH_SECONDS:
            events: list[dict[str, Any]] = []
            marks: list[str] = []
            for _ in range(batch):
                pod = pods[n % len(pods)]
                annotations = {**pod["metadata"].get("annotations", {}), "bench/mark": str(n)}
                meta = {**pod["metadata"], "resourceVersion": f"w{n}", "annotations": annotations}
                events.append({"type": "MODIFIED", "object": {**pod, "metadata": meta}})
                marks.append(str(n))
                n += 1
            await store.apply_batch(cluster="c-000", rtype=PODS, events=events)
            committed = time.perf_counter()
            sent_at.update(dict.fromkeys(marks, committed))
            await asyncio.sleep(max(0.0, start + (n / WATCH_RATE) - time.perf_counter()))
        await asyncio.sleep(2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return received


async def serve_api(url: str) -> None:
    """Run the read API alone (``--serve-api``) and print its port, then the scan settings the
    sessions of its pool run with (``enable_indexscan=on ...``): a baseline started with
    other settings in its URL checks that they took."""
    from aiohttp import web

    from apiserver.access import Access
    from apiserver.app import build_app
    from apiserver.auth import StaticTokens
    from apiserver.grants import User, everything_for
    from apiserver.keys import POOL

    # One caller that reads everything, over plain HTTP on loopback: the figures measure the
    # API's reads (with the access middleware and the grant's SQL), not TLS.
    reader = User(name="bench")
    access = Access(authenticators=(StaticTokens({os.environ[TOKEN_ENV]: reader}),),
                    grants=everything_for([reader.name]))
    runner = web.AppRunner(build_app(database_url=url, access=access), handle_signals=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    async with runner.app[POOL].acquire() as conn:
        settings = [f"{name}={await conn.fetchval('SELECT current_setting($1)', name)}"
                    for name in SCAN_SETTINGS]
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"port={port} {' '.join(settings)}", flush=True)
    await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def database(tmp: Path) -> AsyncIterator[str]:
    async with embedded.running(tmp) as pg:
        conn = await connect(pg.url)
        await migrate(conn)
        await conn.close()
        yield pg.url


async def run(objects: int, clusters: int, keep: Path | None) -> dict[str, Any]:
    per_cluster = objects // clusters
    with tempfile.TemporaryDirectory(prefix="kubepedia-bench-api-") as tmp:
        os.chmod(tmp, 0o755)  # the embedded server's user must reach the data dir inside
        async with Procs(Path(tmp)) as procs, database(keep or Path(tmp) / "data") as url:
            sims = await start_sims(procs, f"namespaces=20,nodes=20,pods={per_cluster}")
            pool = await create_pool(url, min_size=1, max_size=LOADERS + 1)
            try:
                templates = await templates_of(sims)
                if await pool.fetchval("SELECT count(*) FROM clusters"):
                    log(f"reusing the objects loaded in {keep}")
                else:
                    log(f"loading {objects} pods in {clusters} clusters")
                    await load(pool, templates, clusters=clusters, per_cluster=per_cluster)
                total = int(await pool.fetchval("SELECT count(*) FROM resources"))
                api_proc = await procs.start("api", "-m", "benchmarks.api", "--serve-api", url,
                                             stdout_pipe=True, env={TOKEN_ENV: TOKEN})
                api = f"http://127.0.0.1:{(await read_until(api_proc, 'port=', 60)).split()[0]}"
                return await measure(pool, api, sims, templates, total, api_proc.pid)
            finally:
                await pool.close()


async def measure(pool: asyncpg.Pool, api: str, sims: list[str], templates: list[list[dict[str, Any]]],
                  total: int, api_pid: int) -> dict[str, Any]:
    sample = templates[0][len(templates[0]) // 2]
    app = sample["metadata"]["labels"]["app"]
    node = sample["spec"]["nodeName"]
    namespace = sample["metadata"]["namespace"]
    ten = ",".join(f"c-{i:03d}" for i in range(SIMS))
    # A cloned cluster (past the simulated ones) when there is one; the last one otherwise.
    clusters = int(await pool.fetchval("SELECT count(*) FROM clusters"))
    one = f"c-{min(SIMS + 1, clusters - 1):03d}"
    chosen = await plans(pool, namespace=namespace, app=app, node=node, name=sample["metadata"]["name"],
                         ten=frozenset(ten.split(",")), one=one)
    async with aiohttp.ClientSession(headers=AUTH) as session, aiohttp.ClientSession() as to_sims:
        await timed(session, api + "/api")
        log("queries")
        ns = await latencies(session, f"{api}/api/v1/namespaces/{namespace}/pods", lambda i: {"limit": "500"})
        label = await latencies(session, f"{api}/api/v1/pods",
                                lambda i: {"limit": "500", "labelSelector": f"app={app}"})
        field = await latencies(session, f"{api}/api/v1/pods",
                                lambda i: {"limit": "500", "fieldSelector": f"spec.nodeName={node}"})
        get = await latencies(session, f"{api}/clusters/{one}/api/v1/namespaces/{namespace}/pods/"
                              + sample["metadata"]["name"], lambda i: None)
        label_ten = await latencies(session, f"{api}/api/v1/pods", lambda i: {
            "limit": "500", "labelSelector": f"app={app}", "clusters": ten})
        fan = [await fanout(to_sims, sims, app) for _ in range(REPEATS)]
        log("full walk")
        walk_s, walked = await full_walk(session, api)
    assert walked == total, (walked, total)
    log("offset walk")
    offset_s = await offset_walk(pool, total)
    log("watches")
    delivered = await watch_delivery(pool, api, templates)
    return {
        "objects": total, "clusters": int(await pool.fetchval("SELECT count(*) FROM clusters")),
        "ns_list_p50_ms": pct(ns, 0.5), "ns_list_p99_ms": pct(ns, 0.99),
        "label_list_p50_ms": pct(label, 0.5), "label_list_p99_ms": pct(label, 0.99),
        "field_list_p99_ms": pct(field, 0.99), "get_p99_ms": pct(get, 0.99),
        "full_walk_s": round(walk_s, 1), "offset_walk_s": round(offset_s, 1),
        "walk_vs_offset": round(walk_s / offset_s, 3),
        "fanout_label_p99_ms": pct(fan, 0.99), "label_ten_p99_ms": pct(label_ten, 0.99),
        "label_vs_fanout": round(pct(label_ten, 0.99) / pct(fan, 0.99), 3),
        "watch_delivery_p50_ms": pct(delivered, 0.5) if delivered else None,
        "watch_delivery_p99_ms": pct(delivered, 0.99) if delivered else None,
        "watch_events_delivered": len(delivered),
        "api_rss_mb": round(peak_rss_mb(api_pid), 1),
        "plans": chosen,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep the database here and reuse it on the next run (same --objects"
                        " and --clusters); the default is a temporary one")
    parser.add_argument("--serve-api", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_api:
        asyncio.run(serve_api(args.serve_api))
        return
    print(orjson.dumps(asyncio.run(run(args.objects, args.clusters, args.data_dir))).decode())


if __name__ == "__main__":
    main()
