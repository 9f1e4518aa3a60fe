"""kubesim benchmark: paged LIST of many pods, and watch delivery to several watchers.

Run: ``python -m benchmarks.kubesim [--objects N] [--watchers W] [--runs R]``.

kubesim, the baseline server and the load generator each run in their own
process, so the client measuring here does not share an event loop (or a
core, as far as the 2-core machine allows) with the server.

Lists. Baseline: the same pod list, paged the same way, served by a minimal aiohttp
handler from pre-split JSON file content, so the ratio shows what kubesim's
paging costs over pure HTTP transfer and client-side decoding.

Watch delivery. W watchers of all pods (from the list's resourceVersion, bookmarks
allowed) while kubesim's churn writes ``--watch-writes`` pod changes at ``--watch-rate``
per second in-process: every write is one event for every watcher, so the events
delivered per second are what kubesim's write and fan-out path sustains, apart from the
cost of an HTTP client writing. Each run counts the lines the watchers receive until all
arrived, from the first to the last; ``--runs`` runs, reported as min and median. The
server's CPU time per event delivered (user and system, median) says what the figure
costs, which the machine's other load skews less than the rate.
Baseline, alternating with kubesim run by run: as many pod event lines (pre-encoded from
the listed pods) sent by a minimal aiohttp server to the same watchers at the same rate
in the same slices, so the ratio shows what kubesim's writes and fan-out cost over pure
HTTP streaming and client-side reading.

``watch_http_events_per_s`` is the older figure: one run of the same watchers while
``kubesim load`` writes over HTTP (``--http-duration`` seconds, 0 skips it); there the
writer's process and kubesim's HTTP handling of each write share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from benchmarks._procs import cpu_seconds
from kubesim.churn import run_paced

PAGE = 500
WATCHERS = 10
RUNS = 5
BASELINE_LINES = 1000  # distinct event lines the baseline cycles through
CLIENT_CHECK_S = 0.5  # how often an idle baseline stream checks that its client is there


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


@dataclass(eq=False)
class BaselineWatch:
    """One baseline stream's queue of lines."""

    pending: list[bytes] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)


class Baseline:
    """A minimal aiohttp server paging a JSON file's items, and streaming pod event lines
    to its watchers when told to (the baseline)."""

    def __init__(self, items: list[dict[str, object]]) -> None:
        self.pages: list[bytes] = []
        for n, start in enumerate(range(0, len(items), PAGE)):
            meta: dict[str, str] = {"resourceVersion": "1"}
            if start + PAGE < len(items):
                meta["continue"] = str(n + 1)
            self.pages.append(orjson.dumps({"kind": "PodList", "apiVersion": "v1",
                                            "metadata": meta, "items": items[start : start + PAGE]}))
        self.lines = [orjson.dumps({"type": "MODIFIED", "object": item}) + b"\n"
                      for item in items[:BASELINE_LINES]]
        self.watches: set[BaselineWatch] = set()
        self.sent = 0
        self.runs: set[asyncio.Task[int]] = set()

    async def pods(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch"):
            return await self.stream(request)
        return web.Response(body=self.pages[int(request.query.get("continue", "0"))],
                            content_type="application/json")

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        watch = BaselineWatch()
        self.watches.add(watch)
        try:
            await response.prepare(request)
            while request.transport is not None and not request.transport.is_closing():
                try:
                    await asyncio.wait_for(watch.wakeup.wait(), CLIENT_CHECK_S)
                except TimeoutError:
                    continue
                watch.wakeup.clear()
                batch, watch.pending = watch.pending, []
                await response.write(b"".join(batch))
        except ConnectionError:
            pass
        finally:
            self.watches.discard(watch)
        return response

    def step(self, count: int) -> None:
        batch = [self.lines[(self.sent + n) % len(self.lines)] for n in range(count)]
        self.sent += count
        for watch in self.watches:
            watch.pending.extend(batch)
            watch.wakeup.set()

    async def churn(self, request: web.Request) -> web.Response:
        rate, writes = float(request.query["rate"]), int(request.query["writes"])
        task = asyncio.create_task(run_paced(rate, self.step, writes=writes))
        self.runs.add(task)
        task.add_done_callback(self.runs.discard)
        return web.Response(body=b"{}", content_type="application/json")


def serve_baseline(path: str, port: int) -> None:
    baseline = Baseline(orjson.loads(Path(path).read_bytes())["items"])

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/api/v1/pods", baseline.pods)
        app.router.add_post("/_kubesim/churn", baseline.churn)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        bound = runner.addresses[0][1]
        print(f"baseline serving on http://127.0.0.1:{bound}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


@dataclass
class Delivery:
    """What the watchers received: lines each, the first and the last arrival overall."""

    counts: list[int]
    first: float = float("inf")
    last: float = 0.0
    connected: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts)

    def per_second(self) -> float:
        return self.total / (self.last - self.first) if self.last > self.first else 0.0


async def count_events(session: aiohttp.ClientSession, url: str, rv: str,
                       delivery: Delivery, slot: int) -> None:
    """Count event lines; ``delivery`` keeps the first and last arrival over all watchers."""
    params = {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "600",
              "allowWatchBookmarks": "true"}
    async with session.get(url + "/api/v1/pods", params=params) as resp:
        delivery.connected += 1  # once it answered, the server has registered the watch
        async for chunk in resp.content.iter_any():
            now = time.perf_counter()
            delivery.first = min(delivery.first, now)
            delivery.last = max(delivery.last, now)
            delivery.counts[slot] += chunk.count(b"\n")


async def current_rv(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url + "/api/v1/pods", params={"limit": "1"}) as resp:
        return str(orjson.loads(await resp.read())["metadata"]["resourceVersion"])


@asynccontextmanager
async def watching(url: str, watchers: int) -> AsyncIterator[Delivery]:
    """``watchers`` watches of all pods from the current version, all connected."""
    delivery = Delivery([0] * watchers)
    connector = aiohttp.TCPConnector(limit=watchers + 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        rv = await current_rv(session, url)
        readers = [asyncio.create_task(count_events(session, url, rv, delivery, n))
                   for n in range(watchers)]
        try:
            async with asyncio.timeout(30):
                while delivery.connected < watchers:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            yield delivery
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)


@dataclass
class RunResult:
    events_per_s: float
    cpu_us_per_event: float  # the server's


async def churn_run(url: str, pid: int, watchers: int, rate: float, writes: int) -> RunResult:
    """One run: the server writes ``writes`` pod changes at ``rate``; events/s delivered."""
    async with watching(url, watchers) as delivery:
        cpu_before = cpu_seconds(pid)
        params = {"rate": str(rate), "writes": str(writes)}
        async with aiohttp.ClientSession() as session, session.post(
                url + "/_kubesim/churn", params=params) as resp:
            assert resp.status == 200, await resp.text()
        expected = writes * watchers
        deadline = time.monotonic() + 30 + 4 * writes / rate
        while delivery.total < expected and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        cpu = cpu_seconds(pid) - cpu_before
    if delivery.total < expected:
        print(f"{url}: only {delivery.total} of {expected} events arrived", file=sys.stderr)
    return RunResult(delivery.per_second(), cpu / max(delivery.total, 1) * 1e6)


async def churn_runs(servers: tuple[tuple[str, int], tuple[str, int]], args: argparse.Namespace
                     ) -> tuple[list[RunResult], list[RunResult]]:
    """Alternate kubesim and baseline runs (each given as URL and pid), so that load from
    other processes on the machine skews both alike."""
    ours: list[RunResult] = []
    baseline: list[RunResult] = []
    (url, pid), (base_url, base_pid) = servers
    for run in range(args.runs):
        ours.append(await churn_run(url, pid, args.watchers, args.watch_rate, args.watch_writes))
        baseline.append(await churn_run(base_url, base_pid, args.watchers, args.watch_rate,
                                        args.watch_writes))
        print(f"watch run {run + 1}: kubesim {ours[-1].events_per_s:.0f} events/s "
              f"({ours[-1].cpu_us_per_event:.1f} us CPU each), baseline "
              f"{baseline[-1].events_per_s:.0f} events/s "
              f"({baseline[-1].cpu_us_per_event:.1f} us)", file=sys.stderr)
    return ours, baseline


async def http_load_run(url: str, watchers: int, rate: float, duration: float, seed: int
                        ) -> float:
    """The same watchers while ``kubesim load`` writes over HTTP from its own process."""
    async with watching(url, watchers) as delivery:
        load = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kubesim", "load", "--server", url, "--rate", str(rate),
            "--duration", str(duration), "--seed", str(seed), "--concurrency", "64",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await load.communicate()
        before_drain = delivery.total
        await asyncio.sleep(1.0)  # let the watchers drain what was written
    print(f"load: {out.decode().strip()}; events delivered {delivery.total} "
          f"({before_drain} before drain) in {delivery.last - delivery.first:.2f}s",
          file=sys.stderr)
    return delivery.per_second()


def _summary(values: list[float]) -> tuple[float, float]:
    return round(min(values), 1), round(statistics.median(values), 1)


async def run(args: argparse.Namespace) -> dict[str, object]:
    objects = args.objects
    generate = f"pods={objects},deployments={max(objects // 50, 1)},namespaces=20,nodes=100"
    serve = ("-m", "kubesim", "serve", "--port", "0", "--generate", generate, "--seed",
             str(args.seed), "--watch-queue", "200000")
    started = time.perf_counter()
    async with process(*serve) as (proc, url), aiohttp.ClientSession() as session:
        print(f"kubesim with {objects} pods up in {time.perf_counter() - started:.1f}s",
              file=sys.stderr)
        await list_all(session, url)  # warm up
        with tempfile.TemporaryDirectory() as tmp:
            dump = Path(tmp) / "pods.json"
            await save_full_list(session, url, dump)
            base_args = ("-m", "benchmarks.kubesim", "--serve-baseline", str(dump))
            async with process(*base_args) as (base_proc, base_url):
                await list_all(session, base_url)
                list_s, base_s, _ = await best_of(session, url, base_url, objects)
                ours, baseline = await churn_runs(
                    ((url, proc.pid), (base_url, base_proc.pid)), args)
        http_events = 0.0
        if args.http_duration > 0:
            http_events = await http_load_run(url, args.watchers, args.rate,
                                              args.http_duration, args.seed)
    watch_min, watch_median = _summary([r.events_per_s for r in ours])
    base_min, base_median = _summary([r.events_per_s for r in baseline])
    cpu = statistics.median(r.cpu_us_per_event for r in ours)
    base_cpu = statistics.median(r.cpu_us_per_event for r in baseline)
    return {
        "objects": objects,
        "list_all_s": round(list_s, 3),
        "baseline_list_all_s": round(base_s, 3),
        "list_vs_baseline": round(list_s / base_s, 2),
        "watchers": args.watchers,
        "watch_runs": args.runs,
        "watch_rate": args.watch_rate,
        "watch_writes": args.watch_writes,
        "watch_events_per_s_min": watch_min,
        "watch_events_per_s_median": watch_median,
        "baseline_watch_events_per_s_min": base_min,
        "baseline_watch_events_per_s_median": base_median,
        "watch_vs_baseline": round(watch_median / base_median, 2) if base_median else 0.0,
        "watch_cpu_us_per_event": round(cpu, 2),
        "baseline_watch_cpu_us_per_event": round(base_cpu, 2),
        "watch_http_events_per_s": round(http_events, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--watchers", type=int, default=WATCHERS)
    parser.add_argument("--runs", type=int, default=RUNS, help="watch runs (and as many baseline runs)")
    parser.add_argument("--watch-rate", type=float, default=4000.0,
                        help="churn writes/s in each watch run")
    parser.add_argument("--watch-writes", type=int, default=20_000,
                        help="churn writes in each watch run")
    parser.add_argument("--rate", type=float, default=4000.0, help="load generator writes/s")
    parser.add_argument("--http-duration", type=float, default=10.0,
                        help="seconds of HTTP load for watch_http_events_per_s (0: skip)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--serve-baseline", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline, 0)
        return
    result = asyncio.run(run(args))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
