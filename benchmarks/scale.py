"""One syncer, many pulled clusters: initial sync, freshness under churn, memory, writes in flight.

    python -m benchmarks.scale [--clusters C] [--objects N] [--rate R] [--duration S]

One kubesim process serves C member clusters (N objects in all, shaped like clusters) and
one more, the baseline; one ``kubepedia serve`` on a fresh embedded PostgreSQL syncs them
all in pull mode (registered through the admin API with their kubeconfigs), as deployed.

1. Baseline: the extra cluster (N/C objects) is registered alone and synced; then, in the
   same database, its rows are read back and written by a raw binary COPY into a table
   ``LIKE resources`` without indexes, with the default and with uncompressed storage
   (``benchmarks._copy``: only the COPY timed, median of 3; the ratio is to uncompressed).
2. Initial sync: the C clusters are registered at once; time until every type of every
   cluster is watching with kubesim's object count stored. Reported beside the baseline:
   objects/s with C clusters against one, and against the raw COPY. Also: the syncer's
   event-loop lag (its ``/metrics``), how long writes were in flight in the change log
   (from drawing their numbers to their end: the horizon every watch waits for is held
   back meanwhile) and their share of write-transaction time; sampled from ``pg_locks``,
   the share of time some write was in flight, the mean number of writes in flight, and
   how many numbers drawn were above the horizon; CPU seconds of the syncer, kubesim and
   PostgreSQL.
3. Churn: each cluster writes its own pods' status (kubesim's in-process churn) at R/s in
   all, spread evenly, for S seconds, recording when it acknowledged each write, and a
   poller notes when each appears in ``change_log`` below the horizon, where watches see
   it (``benchmarks._fresh``). Freshness p50/p99 are of every write. ``achieved_rate`` is
   the writes kubesim made per second;
   ``ingested_rate`` the pod changes per second that reached ``change_log``.

Peak RSS (VmHWM) of the syncer is read at the end. Progress goes to stderr; the last stdout
line is one JSON object with the figures. Targets: freshness p99 under 1 s at the
full rate, syncer peak RSS under 500 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from prometheus_client.parser import text_string_to_metric_families

from agent.discovery import DEFAULT_EXCLUDED
from benchmarks._copy import CopyRates, copy_rates
from benchmarks._fresh import ChangePoller, churn_load, percentile, wait_visible
from benchmarks._procs import Procs, cpu_seconds, log, peak_rss_mb, reachable_tempdir, rss_mb
from benchmarks.sync import Syncer, start_syncer
from kube.resources import type_key
from syncer.schema import IN_FLIGHT_MARKER

SYNC_TIMEOUT_S = 3600.0
KUBESIM_START_S = 1800.0
SAMPLE_S = 0.05  # pg_locks sampling interval


@dataclass(frozen=True)
class Member:
    name: str
    url: str
    kubeconfig: Path


@dataclass(frozen=True)
class Fleet:
    members: list[Member]  # the clusters under test
    baseline: Member  # synced alone first
    by_type: dict[str, int]  # objects each cluster syncs, per type key
    pid: int

    @property
    def per_cluster(self) -> int:
        return sum(self.by_type.values())


# -- kubesim --------------------------------------------------------------------------------------

async def start_kubesim(procs: Procs, work: Path, *, clusters: int, per_cluster: int, seed: int) -> Fleet:
    listing = work / "clusters.json"
    started = time.monotonic()
    # History: a minute is what an informer that reconnects needs; the default five
    # minutes of 2,000 writes/s would hold gigabytes (kubesim README, "Memory"). Bookmarks
    # come every minute, as kube-apiserver sends them: each is a checkpoint write per type.
    proc = await procs.start(
        "kubesim", "-m", "kubesim", "serve", "--clusters", str(clusters + 1), "--name", "edge",
        "--objects-per-cluster", str(per_cluster), "--seed", str(seed), "--listing-out", str(listing),
        "--kubeconfig-dir", str(work / "kubeconfigs"), "--history-seconds", "60")
    while not listing.exists():
        if proc.returncode is not None:
            raise RuntimeError(f"kubesim exited:\n{procs.tail('kubesim')}")
        if time.monotonic() - started > KUBESIM_START_S:
            raise RuntimeError(f"kubesim not up in {KUBESIM_START_S:.0f}s:\n{procs.tail('kubesim')}")
        await asyncio.sleep(0.5)
    members = [Member(c["name"], c["url"], Path(c["kubeconfig"]))
               for c in orjson.loads(listing.read_bytes())["clusters"]]
    # The clusters are copies of one generated cluster: the same objects by type.
    async with aiohttp.ClientSession() as session, session.get(members[0].url + "/_kubesim/dump") as resp:
        dump = orjson.loads(await resp.read())["objects"]
    by_type = Counter(type_key(o["group"], o["resource"]) for o in dump)
    synced = {k: v for k, v in by_type.items() if k not in DEFAULT_EXCLUDED}
    fleet = Fleet(members[:-1], members[-1], synced, proc.pid)
    log(f"kubesim: {clusters} + 1 clusters of {fleet.per_cluster} objects to sync, up in "
        f"{time.monotonic() - started:.0f}s, RSS {rss_mb(proc.pid):.0f} MiB")
    return fleet


# -- the syncer -----------------------------------------------------------------------------------

async def register_pull(syncer: Syncer, members: Sequence[Member]) -> None:
    headers = {"Authorization": f"Bearer {syncer.admin_token}"}
    async with aiohttp.ClientSession() as session:
        for member in members:
            body = {"name": member.name, "mode": "pull", "settings": {},
                    "kubeconfig": member.kubeconfig.read_text()}
            async with session.post(syncer.admin_url + "/admin/v1/clusters", data=orjson.dumps(body),
                                    headers=headers) as resp:
                if resp.status >= 300:
                    raise RuntimeError(f"registering {member.name}: HTTP {resp.status} {await resp.text()}")


async def wait_synced(db: asyncpg.Connection, procs: Procs, syncer_pid: int, fleet: Fleet,
                      members: Sequence[Member]) -> float:
    """Poll until every type of every cluster is watching with all its objects stored;
    returns the monotonic time it was first seen so."""
    names = [m.name for m in members]
    last_report = time.monotonic()
    deadline = last_report + SYNC_TIMEOUT_S
    while True:
        rows = await db.fetch(
            "SELECT cluster, grp, resource, phase, object_count FROM sync_state"
            " WHERE cluster = ANY($1::text[])", names)
        now = time.monotonic()
        watching = {(r["cluster"], type_key(r["grp"], r["resource"])): r["object_count"] for r in rows
                    if r["phase"] == "watching"}
        done = [n for n in names if all(watching.get((n, k)) == v for k, v in fleet.by_type.items())]
        if len(done) == len(names):
            return now
        if not await _alive(syncer_pid):
            raise RuntimeError(f"the syncer exited:\n{procs.tail('syncer')}")
        if now > deadline:
            raise RuntimeError(f"not synced after {SYNC_TIMEOUT_S:.0f}s: {len(done)}/{len(names)} clusters")
        if now - last_report > 15:
            last_report = now
            stored = sum(r["object_count"] for r in rows)
            log(f"  {stored}/{fleet.per_cluster * len(names)} objects, {len(done)}/{len(names)} clusters "
                f"synced, syncer RSS {rss_mb(syncer_pid):.0f} MiB")
        await asyncio.sleep(0.5)


async def _alive(pid: int) -> bool:
    return await asyncio.to_thread(Path(f"/proc/{pid}").exists)


async def check_stored(db: asyncpg.Connection, fleet: Fleet, members: Sequence[Member]) -> int:
    counts = {r["cluster"]: r["n"] for r in await db.fetch(
        "SELECT cluster, count(*) AS n FROM resources WHERE cluster = ANY($1::text[]) GROUP BY cluster",
        [m.name for m in members])}
    wrong = {m.name: counts.get(m.name, 0) for m in members if counts.get(m.name, 0) != fleet.per_cluster}
    if wrong:
        raise RuntimeError(f"rows stored differ from kubesim's {fleet.per_cluster}: {wrong}")
    return sum(counts.values())


# -- the syncer's metrics -------------------------------------------------------------------------

Histograms = dict[str, dict[str, float]]  # metric -> {"le bound" | "sum" | "count": value}


async def scrape(syncer: Syncer) -> Histograms:
    async with aiohttp.ClientSession() as session, session.get(syncer.ingest_url + "/metrics") as resp:
        text = await resp.text()
    out: Histograms = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        for sample in family.samples:
            values = out.setdefault(family.name + "".join(f"/{v}" for k, v in sorted(sample.labels.items())
                                                          if k != "le"), {})
            if sample.name.endswith("_bucket"):
                values[sample.labels["le"]] = values.get(sample.labels["le"], 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                values["sum"] = values.get("sum", 0.0) + sample.value
            elif sample.name.endswith("_count"):
                values["count"] = values.get("count", 0.0) + sample.value
    return out


def delta(after: Histograms, before: Histograms, name: str) -> dict[str, float]:
    a, b = after.get(name, {}), before.get(name, {})
    return {k: v - b.get(k, 0.0) for k, v in a.items()}


def bucket_quantile(hist: dict[str, float], q: float) -> float:
    """The upper bound of the bucket holding the q-quantile (inf past the last bound)."""
    count = hist.get("count", 0.0)
    bounds = sorted((float(k), v) for k, v in hist.items() if k not in ("sum", "count"))
    for bound, cumulative in bounds:
        if count and cumulative >= q * count:
            return bound
    return 0.0


def write_figures(after: Histograms, before: Histograms) -> dict[str, float]:
    in_flight = delta(after, before, "kubepedia_change_log_in_flight_seconds")
    write = delta(after, before, "kubepedia_store_write_transaction_seconds")
    lag = delta(after, before, "kubepedia_event_loop_lag_seconds")
    connection = delta(after, before, "kubepedia_store_connection_wait_seconds")
    gc_pauses = [delta(after, before, f"kubepedia_gc_pause_seconds/{g}") for g in range(3)]
    numbered = max(in_flight.get("count", 0.0), 1.0)
    return {
        "numbered_writes": in_flight.get("count", 0.0),
        "in_flight_mean_ms": round(1000 * in_flight.get("sum", 0.0) / numbered, 2),
        "in_flight_p99_ms": 1000 * bucket_quantile(in_flight, 0.99),
        "write_transactions": write.get("count", 0.0),
        "write_transaction_s": round(write.get("sum", 0.0), 2),
        "in_flight_share": round(in_flight.get("sum", 0.0) / max(write.get("sum", 0.0), 1e-9), 3),
        "connection_wait_s": round(connection.get("sum", 0.0), 2),
        "loop_lag_p99_ms": 1000 * bucket_quantile(lag, 0.99),
        "loop_lag_max_ms": 1000 * bucket_quantile(lag, 1.0),
        "gc_pause_s": round(sum(p.get("sum", 0.0) for p in gc_pauses), 2),
        "gc_full_collections": gc_pauses[2].get("count", 0.0),
        "gc_full_pause_max_ms": 1000 * bucket_quantile(gc_pauses[2], 1.0),
    }


# Writes in flight: their markers (migration 18), one transaction each however many it holds;
# and how many numbers drawn are above the horizon (the drawn count read first, as the
# horizon reads it, so the difference is never below what it was).
_IN_FLIGHT_SAMPLE = """
SELECT (SELECT count(DISTINCT virtualtransaction) FROM pg_locks
        WHERE locktype = 'advisory' AND objsubid = 2 AND mode = 'ShareLock'
          AND classid::bigint >> 24 = $1) AS writers,
       greatest(d.drawn - change_log_horizon(), 0) AS above
FROM (SELECT change_log_drawn() AS drawn) d
"""


class InFlightSampler:
    """Samples ``pg_locks``: how often some write is in flight in the change log, how many
    are, and how far the newest number drawn is above the horizon."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.samples = 0
        self.busy = 0
        self.writers = 0
        self.above = 0

    async def __aenter__(self) -> InFlightSampler:
        self._conn = await asyncpg.connect(self.db_url)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._conn.close()

    async def _run(self) -> None:
        stmt = await self._conn.prepare(_IN_FLIGHT_SAMPLE)
        while True:
            row = await stmt.fetchrow(IN_FLIGHT_MARKER)
            assert row is not None
            self.samples += 1
            self.busy += bool(row["writers"])
            self.writers += row["writers"]
            self.above += row["above"]
            await asyncio.sleep(SAMPLE_S)

    def figures(self) -> dict[str, float]:
        n = max(self.samples, 1)
        return {"in_flight_sampled_share": round(self.busy / n, 3),
                "writers_in_flight_mean": round(self.writers / n, 2),
                "numbers_above_horizon_mean": round(self.above / n, 1)}


# -- the phases ------------------------------------------------------------------------------------

def decoder_pids(syncer_pid: int) -> list[int]:
    """The syncer's decoder processes (``syncer.decoding``): its children that multiprocessing spawned."""
    pids = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.name.isdigit() and b"multiprocessing" in (entry / "cmdline").read_bytes():
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == syncer_pid:
                    pids.append(int(entry.name))
    return pids


def cpu_now(syncer: Syncer, fleet: Fleet) -> dict[str, float]:
    """CPU seconds so far; the syncer's include its decoder processes (while they live)."""
    return {"syncer": cpu_seconds(syncer.pid) + sum(cpu_seconds(p) for p in decoder_pids(syncer.pid)),
            "kubesim": cpu_seconds(fleet.pid), "postgres": cpu_seconds(syncer.postgres_pid, children=True)}


def cpu_since(before: dict[str, float], syncer: Syncer, fleet: Fleet) -> dict[str, float]:
    after = cpu_now(syncer, fleet)
    return {k: round(after[k] - before[k], 1) for k in after}


async def sync_phase(procs: Procs, syncer: Syncer, db: asyncpg.Connection, fleet: Fleet,
                     members: Sequence[Member]) -> dict[str, Any]:
    """Register ``members`` at once; the figures of their initial sync."""
    before_metrics, before_cpu = await scrape(syncer), cpu_now(syncer, fleet)
    async with InFlightSampler(syncer.db_url) as sampler:
        started = time.monotonic()
        await register_pull(syncer, members)
        done = await wait_synced(db, procs, syncer.pid, fleet, members)
    seconds = done - started
    cpu = cpu_since(before_cpu, syncer, fleet)
    stored = await check_stored(db, fleet, members)
    figures = {"objects": stored, "seconds": seconds, "objects_per_s": stored / seconds, "cpu_s": cpu,
               **write_figures(await scrape(syncer), before_metrics), **sampler.figures()}
    log(f"{len(members)} clusters: {stored} objects in {seconds:.1f}s ({stored / seconds:.0f}/s); "
        f"CPU s {cpu}; {figures}")
    return figures


async def churn_phase(syncer: Syncer, fleet: Fleet, *, rate: float, duration: float) -> dict[str, Any]:
    members = fleet.members
    names = [m.name for m in members]
    before_metrics, before_cpu = await scrape(syncer), cpu_now(syncer, fleet)
    async with InFlightSampler(syncer.db_url) as sampler, ChangePoller(syncer.db_url, names) as poller:
        acks, errors = await churn_load([m.url for m in members], rate, duration)
        latencies = await wait_visible(poller, acks, names)
        ingested = poller.rows
    cpu = cpu_since(before_cpu, syncer, fleet)
    figures = {
        "writes": len(acks), "write_errors": errors, "missing": len(acks) - len(latencies),
        "p50_ms": round(percentile(latencies, 0.5), 1), "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1), "achieved_rate": round(len(acks) / duration),
        "ingested": ingested, "ingested_rate": round(ingested / duration), "cpu_s": cpu,
        **write_figures(await scrape(syncer), before_metrics), **sampler.figures(),
    }
    log(f"churn at {rate:.0f}/s: {figures}")
    return figures


def summary(clusters: int, solo: dict[str, Any], copy: CopyRates, main: dict[str, Any],
            churn: dict[str, Any], rss: float) -> dict[str, Any]:
    objects = main["objects"]
    return {
        "clusters": clusters,
        "objects": objects,
        "initial_sync_s": round(main["seconds"], 1),
        "initial_sync_objects_per_s": round(main["objects_per_s"]),
        "baseline_one_cluster_objects_per_s": round(solo["objects_per_s"]),
        "initial_sync_vs_one_cluster": round(main["objects_per_s"] / solo["objects_per_s"], 3),
        "copy_objects_per_s": round(copy.uncompressed),
        "copy_objects_per_s_default": round(copy.default),
        "initial_sync_vs_copy": round(main["objects_per_s"] / copy.uncompressed, 3),
        "freshness_p50_ms": churn["p50_ms"],
        "freshness_p99_ms": churn["p99_ms"],
        "freshness_missing": churn["missing"],
        "achieved_rate": churn["achieved_rate"],
        "ingested_rate": churn["ingested_rate"],
        "syncer_rss_mb": round(rss, 1),
        "pg_cpu_us_per_object": round(1e6 * main["cpu_s"]["postgres"] / objects),
        "syncer_cpu_us_per_object": round(1e6 * main["cpu_s"]["syncer"] / objects),
        "pg_cpu_us_per_event": round(1e6 * churn["cpu_s"]["postgres"] / max(churn["ingested"], 1)),
        "initial_sync_cpu_s": main["cpu_s"],
        "churn_cpu_s": churn["cpu_s"],
        "initial_sync_loop_lag_p99_ms": main["loop_lag_p99_ms"],
        "initial_sync_loop_lag_max_ms": main["loop_lag_max_ms"],
        "churn_loop_lag_p99_ms": churn["loop_lag_p99_ms"],
        "churn_loop_lag_max_ms": churn["loop_lag_max_ms"],
        "initial_sync_gc": {k: main[k] for k in _GC_KEYS},
        "churn_gc": {k: churn[k] for k in _GC_KEYS},
        "initial_sync_writes": {k: main[k] for k in _WRITE_KEYS},
        "churn_writes": {k: churn[k] for k in _WRITE_KEYS},
    }


_GC_KEYS = ("gc_pause_s", "gc_full_collections", "gc_full_pause_max_ms")
_WRITE_KEYS = ("numbered_writes", "in_flight_mean_ms", "in_flight_p99_ms", "write_transactions",
               "write_transaction_s", "in_flight_share", "connection_wait_s", "in_flight_sampled_share",
               "writers_in_flight_mean", "numbers_above_horizon_mean")


async def run(*, clusters: int, objects: int, rate: float, duration: float, seed: int, keep: str
              ) -> dict[str, Any]:
    with contextlib.ExitStack() as cleanup:
        temp = "" if keep else cleanup.enter_context(reachable_tempdir("kubepedia-bench-scale-"))
        work = Path(keep or temp)
        async with Procs(work) as procs:
            log(f"starting kubesim: {clusters} clusters of {objects // clusters} objects and a baseline one")
            fleet = await start_kubesim(procs, work, clusters=clusters, per_cluster=objects // clusters,
                                        seed=seed)
            log("starting kubepedia serve on a fresh embedded PostgreSQL")
            syncer = await start_syncer(procs, work / "data")
            db = await asyncpg.connect(syncer.db_url)
            try:
                solo = await sync_phase(procs, syncer, db, fleet, [fleet.baseline])
                copy = await copy_rates(db, where="cluster = $1", args=(fleet.baseline.name,),
                                        spool=work / "copy-baseline.bin")
                main = await sync_phase(procs, syncer, db, fleet, fleet.members)
                log(f"syncer RSS after the initial sync {rss_mb(syncer.pid):.0f} MiB, "
                    f"peak {peak_rss_mb(syncer.pid):.0f} MiB")
                churn = await churn_phase(syncer, fleet, rate=rate, duration=duration)
                rss = peak_rss_mb(syncer.pid)
            finally:
                await db.close()
    return summary(clusters, solo, copy, main, churn, rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--objects", type=int, default=1_000_000, help="objects in all the clusters")
    parser.add_argument("--rate", type=float, default=2000.0, help="writes/s over all the clusters")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of churn")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work-dir", default="",
                        help="keep logs and the database in this new directory (default: a temp dir)")
    args = parser.parse_args()
    if args.clusters < 1 or args.objects < args.clusters or args.rate <= 0 or args.duration <= 0:
        parser.error("--clusters, --rate, --duration must be positive; --objects at least one per cluster")
    if args.work_dir:
        Path(args.work_dir).mkdir(parents=True, exist_ok=False)
    result = asyncio.run(run(clusters=args.clusters, objects=args.objects, rate=args.rate,
                             duration=args.duration, seed=args.seed, keep=args.work_dir))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
