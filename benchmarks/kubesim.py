"""kubesim benchmark: paged LIST of many pods, and watch fan-out under load.

Run: ``python -m benchmarks.kubesim [--objects N]``.

kubesim, the baseline server and the load generator each run in their own
process, so the client measuring here does not share an event loop (or a
core, as far as the 2-core machine allows) with the server.

Baseline: the same pod list, paged the same way, served by a minimal aiohttp
handler from pre-split JSON file content, so the ratio shows what kubesim's
paging costs over pure HTTP transfer and client-side decoding.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

PAGE = 500
WATCHERS = 10


@asynccontextmanager
async def process(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """Start a server process and wait for the line announcing its URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert proc.stdout is not None
    try:
        url = ""
        while not url:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError(f"{args} exited early")
            if "serving on " in line:
                url = line.rsplit("serving on ", 1)[1].strip()
        yield proc, url
    finally:
        proc.terminate()
        await proc.wait()


async def list_all(session: aiohttp.ClientSession, url: str) -> tuple[float, int, str]:
    """Page through every pod; returns seconds, item count and the first page's RV."""
    started = time.perf_counter()
    token, count, rv = "", 0, ""
    while True:
        params = {"limit": str(PAGE)}
        if token:
            params["continue"] = token
        async with session.get(url + "/api/v1/pods", params=params) as resp:
            body = orjson.loads(await resp.read())
        count += len(body["items"])
        rv = rv or body["metadata"]["resourceVersion"]
        token = body["metadata"].get("continue", "")
        if not token:
            return time.perf_counter() - started, count, rv


async def best_of(
    session: aiohttp.ClientSession, url: str, base_url: str, objects: int, rounds: int = 3
) -> tuple[float, float, str]:
    """Alternate kubesim and baseline runs and keep each one's best, so that
    load from other processes on the machine skews both alike."""
    best, base_best, rv = float("inf"), float("inf"), ""
    for _ in range(rounds):
        seconds, count, rv = await list_all(session, url)
        assert count == objects, (count, objects)
        best = min(best, seconds)
        seconds, count, _ = await list_all(session, base_url)
        assert count == objects, (count, objects)
        base_best = min(base_best, seconds)
    return best, base_best, rv


async def save_full_list(session: aiohttp.ClientSession, url: str, path: Path) -> None:
    async with session.get(url + "/api/v1/pods") as resp:
        data = await resp.read()
    await asyncio.to_thread(path.write_bytes, data)


def serve_baseline(path: str, port: int) -> None:
    """A minimal aiohttp server paging a JSON file's items (the baseline)."""
    items = orjson.loads(Path(path).read_bytes())["items"]
    pages: list[bytes] = []
    for n, start in enumerate(range(0, len(items), PAGE)):
        meta: dict[str, str] = {"resourceVersion": "1"}
        if start + PAGE < len(items):
            meta["continue"] = str(n + 1)
        pages.append(orjson.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": meta,
                                   "items": items[start : start + PAGE]}))

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=pages[int(request.query.get("continue", "0"))],
                            content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/api/v1/pods", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        bound = runner.addresses[0][1]
        print(f"baseline serving on http://127.0.0.1:{bound}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


async def count_events(session: aiohttp.ClientSession, url: str, rv: str,
                       counts: list[int], times: list[float], slot: int) -> None:
    """Count event lines; ``times`` keeps the first and last arrival over all watchers."""
    params = {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "600"}
    async with session.get(url + "/api/v1/pods", params=params) as resp:
        async for chunk in resp.content.iter_any():
            now = time.perf_counter()
            times[0] = min(times[0], now)
            times[1] = max(times[1], now)
            counts[slot] += chunk.count(b"\n")


async def watch_throughput(url: str, rv: str, rate: float, duration: float, seed: int) -> float:
    counts = [0] * WATCHERS
    times = [float("inf"), 0.0]
    connector = aiohttp.TCPConnector(limit=WATCHERS + 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        readers = [asyncio.create_task(count_events(session, url, rv, counts, times, n))
                   for n in range(WATCHERS)]
        await asyncio.sleep(0.5)
        load = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kubesim", "load", "--server", url, "--rate", str(rate),
            "--duration", str(duration), "--seed", str(seed), "--concurrency", "64",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await load.communicate()
        before_drain = sum(counts)
        await asyncio.sleep(1.0)  # let the watchers drain what was written
        # From the first event to the last: load process start-up is not delivery time.
        elapsed = times[1] - times[0]
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    total = sum(counts)
    print(f"load: {out.decode().strip()}; events delivered {total} "
          f"({before_drain} before drain) in {elapsed:.2f}s", file=sys.stderr)
    return total / elapsed


async def run(objects: int, rate: float, duration: float, seed: int) -> dict[str, float]:
    generate = f"pods={objects},deployments={max(objects // 50, 1)},namespaces=20,nodes=100"
    args = ("-m", "kubesim", "serve", "--port", "0", "--generate", generate, "--seed", str(seed),
            "--watch-queue", "200000")
    started = time.perf_counter()
    async with process(*args) as (_, url), aiohttp.ClientSession() as session:
        print(f"kubesim with {objects} pods up in {time.perf_counter() - started:.1f}s",
              file=sys.stderr)
        await list_all(session, url)  # warm up
        with tempfile.TemporaryDirectory() as tmp:
            dump = Path(tmp) / "pods.json"
            await save_full_list(session, url, dump)
            base_args = ("-m", "benchmarks.kubesim", "--serve-baseline", str(dump))
            async with process(*base_args) as (_, base_url):
                await list_all(session, base_url)
                list_s, base_s, rv = await best_of(session, url, base_url, objects)
        events_per_s = await watch_throughput(url, rv, rate, duration, seed)
    return {
        "objects": objects,
        "list_all_s": round(list_s, 3),
        "baseline_list_all_s": round(base_s, 3),
        "list_vs_baseline": round(list_s / base_s, 2),
        "watch_events_per_s": round(events_per_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=4000.0, help="load generator writes/s")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--serve-baseline", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline, 0)
        return
    result = asyncio.run(run(args.objects, args.rate, args.duration, args.seed))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
