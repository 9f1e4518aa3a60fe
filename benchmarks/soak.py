"""Soak: many clusters under churn, many readers, and a fault every 30 s; nothing may be lost.

    python -m benchmarks.soak [--minutes M] [--fault-every S] [--rate R] [--work-dir DIR]

Five member clusters in one kubesim process (``kubesim serve --clusters 5``, about 2,000
objects each), four pulled by the syncer and one pushed by an agent, so both paths are
soaked; ``kubepedia serve`` (syncer and read API in one process) on an embedded
PostgreSQL that this benchmark starts, so that it can restart it underneath the syncer.
Every cluster changes its own pods through kubesim's in-process churn (the default mix:
creates, deletes and status updates), 500 changes/s in all (``--rate``). Two hundred readers in one
process (``benchmarks._soak_readers``) call the read API meanwhile: 160 loop over lists
(paged, label and field selectors), Clusterpedia searches and GETs with a pause of about
4 s between requests; 40 hold long watches, mostly of one namespace of one cluster. The
readers cost about a tenth of one core (``readers_cpu_share``: their CPU seconds per
second of the run, 0.11 in a 3-minute run), little next to what the syncer and PostgreSQL
need at 500 events/s; they decode only the head of each list page, as decoding every
page took most of a core. Where the syncer cannot keep up (a small machine shared with
other work), the backlog drains after the churn stops: ``converge_s`` says how long that
took, ``events_per_s`` how fast changes were applied while faults came.

The first minute (a quarter of a shorter run) is fault-free: its reads are the baseline.
Then a fault every ``--fault-every`` seconds (30), in rotation (``benchmarks._soak_system``):
drop every watch, compact one cluster, kill -9 and restart the syncer, restart PostgreSQL,
stall one cluster for 10 s. At the end the churn stops and, within a bound, the store must
converge to every cluster; then:

- ``events_lost``: objects missing from the store, extra in it, or stale (another uid or
  resourceVersion), compared object by object with each simulator
  (``benchmarks._convergence``); must be 0;
- ``events_applied``: changes of the clusters that reached ``change_log`` during the run;
- ``watch_events_missed``: for each watcher, the changes of its scope in the change log
  that it owed and never got; a watcher owes every change after the resourceVersion of
  its list up to the end (the change log's head once everything converged and settled),
  except that after a 410 it relists and owes nothing between its last position and the
  relist (``benchmarks._soak_account``); must be 0;
- ``reads_served`` (2xx answers; a GET of a pod churn deleted answers 404, counted apart),
  ``errors_5xx`` outside the windows PostgreSQL was down (must be 0),
  ``errors_5xx_pg_down`` inside them (plus a grace of a few seconds for pools to
  reconnect), ``no_answer`` (connection failures) outside and inside the syncer's restarts;
- ``read_p99_ms`` of the requests made while faults came (watches excepted), against
  ``baseline_read_p99_ms`` of the fault-free start (``read_p99_vs_baseline``); the events
  per second applied likewise (``events_per_s_vs_baseline``);
- ``peak_rss_mb``: the peak resident memory of each process (PostgreSQL: every server
  process together; the syncer: the largest of its incarnations, decoders included).

Progress and each fault (with its time) go to stderr; the last stdout line is one JSON
object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from benchmarks._convergence import Divergence, converge
from benchmarks._procs import Procs, cpu_seconds, log, peak_rss_mb, postmaster_pid, reachable_tempdir
from benchmarks._soak_account import ReadFigures, WatchCheck, check_watch, classify_reads, percentile
from benchmarks._soak_system import (
    System,
    control,
    fault_loop,
    register,
    rss_of,
    start_agent,
    start_kubesim,
    start_pg,
    start_syncer,
)
from syncer import embedded

CLUSTERS = 5
RATE = 500.0
READERS = 200
WATCHERS = 40
THINK_S = 4.0
OBJECTS_PER_CLUSTER = 2000
BASELINE_S = 60.0
INITIAL_SYNC_S = 300.0
CONVERGE_S = 600.0
SETTLE_S = 5.0  # after convergence, for watchers to receive the last changes
PG_GRACE_S = 3.0  # after PostgreSQL is back, for pools to reconnect
SAMPLE_S = 2.0


async def fetch(pg: embedded.EmbeddedPostgres, query: str, *args: Any) -> list[asyncpg.Record]:
    """One query on a connection of its own: PostgreSQL restarts during the run."""
    conn = await asyncpg.connect(pg.url)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(query, *args)
        return rows
    finally:
        await conn.close()


async def head(pg: embedded.EmbeddedPostgres) -> int:
    return int((await fetch(pg, "SELECT coalesce(max(seq), 0) AS s FROM change_log"))[0]["s"])


async def changes_between(pg: embedded.EmbeddedPostgres, clusters: list[str], after: int, upto: int) -> int:
    rows = await fetch(pg, "SELECT count(*) AS n FROM change_log WHERE cluster = ANY($1::text[])"
                           " AND seq > $2 AND seq <= $3", clusters, after, upto)
    return int(rows[0]["n"])


class RssPeaks:
    """Samples each process's resident memory; keeps the peaks."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.peaks: dict[str, float] = {}
        self.extra: dict[str, int] = {}  # other processes to sample, by name

    def sample(self) -> None:
        named = {**self.system.pids(), **{k: [v] for k, v in self.extra.items()}}
        for name, pids in named.items():
            with contextlib.suppress(OSError, ValueError):
                mb = rss_of(pids, with_children=name == "postgres")
                self.peaks[name] = max(self.peaks.get(name, 0.0), round(mb, 1))

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(SAMPLE_S)


# -- setting up ----------------------------------------------------------------------------------

async def set_up(system: System) -> None:
    await start_syncer(system)
    *pulled, pushed = system.members
    for member in pulled:
        await register(system, member, pull=True)
    token = await register(system, pushed, pull=False)
    assert token is not None
    await start_agent(system, pushed, token)
    started = time.monotonic()
    pool = await asyncpg.create_pool(system.pg.url, min_size=1, max_size=2)
    try:
        for member in system.members:
            left = await converge(pool, member.name, member.url, within=INITIAL_SYNC_S)
            if left.count:
                raise RuntimeError(f"{member.name}: initial sync incomplete: {left.describe()}")
    finally:
        await pool.close()
    log(f"{len(system.members)} clusters synced in {time.monotonic() - started:.0f}s")


async def start_readers(system: System, namespaces: list[str], seed: int) -> asyncio.subprocess.Process:
    config = {"access": vars(system.access), "clusters": [m.name for m in system.members],
              "namespaces": namespaces, "readers": READERS, "watchers": WATCHERS, "think_s": THINK_S,
              "seed": seed}
    path = system.work / "readers.json"
    path.write_bytes(orjson.dumps(config))
    return await system.procs.start("readers", "-m", "benchmarks._soak_readers", str(path),
                                    str(system.work / "reads.json"))


# -- the end -------------------------------------------------------------------------------------

async def stop_churn(system: System) -> dict[str, int]:
    states = [await control(m, "churn", rate="0") for m in system.members]
    writes = sum(int(s["writes"]) for s in states)
    return {"churn_writes": writes, "churn_errors": sum(int(s["errors"]) for s in states)}


async def converged(system: System) -> tuple[list[Divergence], float]:
    started = time.monotonic()
    pool = await asyncpg.create_pool(system.pg.url, min_size=1, max_size=2)
    try:
        found = [await converge(pool, m.name, m.url,
                                within=max(1.0, CONVERGE_S - (time.monotonic() - started)))
                 for m in system.members]
    finally:
        await pool.close()
    for member, left in zip(system.members, found, strict=True):
        if left.count:
            log(f"{member.name} differs from the store: {left.describe()}")
    return found, time.monotonic() - started


async def check_watchers(pg: embedded.EmbeddedPostgres, watchers: list[dict[str, Any]], clusters: list[str],
                         end: int) -> list[WatchCheck]:
    """Each watcher against the change log of its scope; its last span reaches ``end``."""
    conn = await asyncpg.connect(pg.url)
    try:
        stmt = await conn.prepare(
            "SELECT seq FROM change_log WHERE grp = $1 AND version = $2 AND resource = $3"
            " AND ($4::text IS NULL OR cluster = $4) AND ($5::text IS NULL OR namespace = $5)"
            " AND cluster = ANY($6::text[]) AND seq > $7 AND seq <= $8")
        checks = []
        for w in watchers:
            spans = [tuple(s) for s in w["spans"]]
            if not spans:
                continue
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
            s = w["scope"]
            rows = await stmt.fetch(s["group"], s["version"], s["resource"], s["cluster"], s["namespace"],
                                    clusters, spans[0][0], spans[-1][1])
            checks.append(check_watch(changes=[r["seq"] for r in rows], spans=spans, seen=w["seen"]))
        return checks
    finally:
        await conn.close()


def p99_ms(reads: list[Any], start: float, end: float) -> float:
    latencies = [1000 * (r[1] - r[0]) for r in reads
                 if r[3] != "watch" and r[2] in (200, 404) and start <= r[0] < end]
    return round(percentile(latencies, 0.99), 1)


def figures(*, system: System, reads: list[Any], watchers: list[dict[str, Any]], checks: list[WatchCheck],
            lost: list[Divergence], counts: dict[str, Any], peaks: dict[str, float]) -> dict[str, Any]:
    phase = counts["phase"]
    classified: ReadFigures = classify_reads([tuple(r[:3]) for r in reads], pg_down=system.pg_down,
                                             server_down=system.syncer_down, grace=PG_GRACE_S)
    read_p99, baseline_p99 = p99_ms(reads, phase["faults"], phase["end"]), p99_ms(reads, phase["start"],
                                                                                     phase["faults"])
    rate = counts["fault_events"] / max(phase["end"] - phase["faults"], 1e-9)
    baseline_rate = counts["baseline_events"] / max(phase["faults"] - phase["start"], 1e-9)
    return {
        "events_applied": counts["events_applied"],
        "events_lost": sum(d.count for d in lost),
        "watch_events_missed": sum(c.missed for c in checks),
        "reads_served": classified.served,
        "errors_5xx": classified.errors_5xx,
        "errors_5xx_pg_down": classified.errors_5xx_pg_down,
        "read_p99_ms": read_p99,
        "peak_rss_mb": peaks,
        "baseline_read_p99_ms": baseline_p99,
        "read_p99_vs_baseline": round(read_p99 / baseline_p99, 3) if baseline_p99 else None,
        "events_per_s": round(rate, 1),
        "baseline_events_per_s": round(baseline_rate, 1),
        "events_per_s_vs_baseline": round(rate / baseline_rate, 3) if baseline_rate else None,
        "lost": {"missing": sum(len(d.missing) for d in lost), "extra": sum(len(d.extra) for d in lost),
                 "stale": sum(len(d.stale) for d in lost)},
        "converge_s": round(counts["converge_s"], 1),
        "churn_writes": counts["churn_writes"],
        "churn_errors": counts["churn_errors"],
        "reads_not_found": sum(1 for r in reads if r[2] == 404),
        "errors_4xx": classified.errors_4xx - sum(1 for r in reads if r[2] == 404),
        "no_answer": classified.no_answer,
        "no_answer_syncer_down": classified.no_answer_server_down,
        "watchers": len(checks),
        "watch_events_seen": sum(len(w["seen"]) for w in watchers),
        "watch_events_owed": sum(c.expected for c in checks),
        "watch_events_duplicated": sum(c.duplicated for c in checks),
        "watch_events_unexpected": sum(c.unexpected for c in checks),
        "watches_opened": sum(w["watches"] for w in watchers),
        "watch_relists": sum(w["relists"] for w in watchers),
        "watch_failures": sum(w["failures"] for w in watchers),
        "faults": dict(Counter(f["fault"] for f in system.faults)),
        "pg_down_s": round(sum(b - a for a, b in system.pg_down), 1),
        "syncer_down_s": round(sum(b - a for a, b in system.syncer_down), 1),
        "minutes": round((phase["end"] - phase["start"]) / 60, 2),
        "rate": counts["rate"],
        "readers_cpu_share": round(counts["readers_cpu_s"] / max(phase["end"] - phase["start"], 1e-9), 3),
        "cpu_s": counts["cpu_s"],
    }


# -- the run -------------------------------------------------------------------------------------

async def soak(system: System, *, seconds: float, fault_every: float, rate: float, seed: int
               ) -> dict[str, Any]:
    await set_up(system)
    names = [m.name for m in system.members]
    namespaces = [r["namespace"] for r in await fetch(
        system.pg, "SELECT DISTINCT namespace FROM resources WHERE resource = 'pods' AND cluster = $1"
                   " ORDER BY namespace", names[0])]
    peaks = RssPeaks(system)
    readers = await start_readers(system, namespaces, seed)
    peaks.extra["readers"] = readers.pid
    sampler = asyncio.create_task(peaks.run())
    cpu_before = {"kubesim": cpu_seconds(system.kubesim.pid),
                  "postgres": cpu_seconds(postmaster_pid(system.pg.pgdata), children=True)}
    seq0 = await head(system.pg)
    for member in system.members:
        await control(member, "churn", rate=str(rate / len(system.members)), seconds=str(seconds + 600))
    start = time.monotonic()
    baseline_s = min(BASELINE_S, seconds / 4)
    await asyncio.sleep(baseline_s)
    seq_faults = await head(system.pg)
    log(f"baseline: {baseline_s:.0f}s without faults; faults every {fault_every:.0f}s from now")
    await fault_loop(system, start=start + baseline_s, every=fault_every, until=start + seconds)
    await asyncio.sleep(max(0.0, start + seconds - time.monotonic()))
    end = time.monotonic()
    churn = await stop_churn(system)
    seq_load = await head(system.pg)
    log(f"load stopped: {churn}; waiting for the store to converge")
    lost, converge_s = await converged(system)
    seq_end = await head(system.pg)  # what watchers owe: they get SETTLE_S to receive it
    await asyncio.sleep(SETTLE_S)
    cpu = {"kubesim": round(cpu_seconds(system.kubesim.pid) - cpu_before["kubesim"], 1),
           "postgres": round(cpu_seconds(postmaster_pid(system.pg.pgdata), children=True)
                             - cpu_before["postgres"], 1)}
    await asyncio.to_thread(peaks.sample)
    peaks.peaks["readers"] = max(peaks.peaks.get("readers", 0.0), round(peak_rss_mb(readers.pid), 1))
    if system.syncer is not None:
        system.syncer_peak_mb = max(system.syncer_peak_mb, peak_rss_mb(system.syncer.pid))
    sampler.cancel()
    await system.procs.stop(readers)
    out = orjson.loads((system.work / "reads.json").read_bytes())
    checks = await check_watchers(system.pg, out["watchers"], names, seq_end)
    peaks.peaks["syncer"] = max(peaks.peaks.get("syncer", 0.0), round(system.syncer_peak_mb, 1))
    counts = {"events_applied": await changes_between(system.pg, names, seq0, seq_end),
              "baseline_events": await changes_between(system.pg, names, seq0, seq_faults),
              "fault_events": await changes_between(system.pg, names, seq_faults, seq_load),
              "converge_s": converge_s, "rate": rate, "readers_cpu_s": out["cpu_s"], "cpu_s": cpu,
              "phase": {"start": start, "faults": start + baseline_s, "end": end}, **churn}
    return figures(system=system, reads=out["reads"], watchers=out["watchers"], checks=checks, lost=lost,
                   counts=counts, peaks=dict(peaks.peaks))


async def run(*, minutes: float, fault_every: float, rate: float, seed: int, keep: str) -> dict[str, Any]:
    with contextlib.ExitStack() as cleanup:
        work = Path(keep or cleanup.enter_context(reachable_tempdir("kubepedia-bench-soak-")))
        pg = await start_pg(work)
        try:
            async with Procs(work) as procs:
                kubesim, members = await start_kubesim(procs, work, clusters=CLUSTERS,
                                                       objects=OBJECTS_PER_CLUSTER, seed=seed)
                system = System(procs=procs, work=work, pg=pg, members=members, kubesim=kubesim)
                return await soak(system, seconds=minutes * 60, fault_every=fault_every, rate=rate, seed=seed)
        finally:
            await asyncio.to_thread(embedded.stop, pg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of load (default 10)")
    parser.add_argument("--fault-every", type=float, default=30.0,
                        help="seconds between faults (default 30; shorter for a quick check)")
    parser.add_argument("--rate", type=float, default=RATE,
                        help="changes/s of all the clusters together (default 500)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work-dir", default="",
                        help="keep logs and the databases in this new directory (default: a temp dir)")
    args = parser.parse_args()
    if args.minutes <= 0 or args.fault_every <= 0 or args.rate <= 0:
        parser.error("--minutes, --fault-every and --rate must be positive")
    if args.work_dir:
        Path(args.work_dir).mkdir(parents=True, exist_ok=False)
        Path(args.work_dir).chmod(0o711)
    result = asyncio.run(run(minutes=args.minutes, fault_every=args.fault_every, rate=args.rate,
                             seed=args.seed, keep=args.work_dir))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
