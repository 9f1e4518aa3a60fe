"""End-to-end sync: agent -> syncer -> PostgreSQL, against kubesim member clusters.

    python -m benchmarks.sync [--objects N] [--duration S] [--rates 1000,5000] [--load churn|http]
                              [--agent-rss-only]

Every component runs as its own process, as deployed: kubesim (the member cluster), the
``kubepedia serve`` syncer on a fresh embedded PostgreSQL, one ``kubepedia agent`` per
cluster (registered in push mode through the admin API).

(a) Initial sync: time from starting the agent until every object of an N-object cluster
    (pods, deployments, replicasets, configmaps, services, secrets, events, nodes,
    namespaces) is in ``resources`` and every type's snapshot has ended (phase
    ``watching``). Baseline, same run and same database: the same rows (read back from
    ``resources`` as a binary COPY stream before the clock starts) in one raw COPY into a
    table ``LIKE resources`` without indexes, with the server's default TOAST compression
    (``copy_objects_per_s_default``) and with objects stored as ``resources`` stores them,
    uncompressed (``copy_objects_per_s_uncompressed``, also ``copy_objects_per_s``); each
    the median of 3 runs (``benchmarks._copy``). ``initial_sync_vs_copy`` is against the
    uncompressed one, ``initial_sync_vs_copy_default`` against the other.
    ``pg_cpu_us_per_object``: PostgreSQL's CPU (every server process) during the sync,
    per object synced. The baseline runs after (b), whose figures its writes would disturb.
(b) Freshness: while the agent watches that cluster (and once autovacuum is done with what
    the sync or the previous run wrote), pod status is written at a fixed rate: by the
    cluster itself (``--load churn``, the default: kubesim's in-process churn, as kubelets
    write in a real cluster, so that no load client takes the machine's CPU from the
    pipeline measured) or by writer processes over HTTP (``--load http``); each write's
    resourceVersion and the time kubesim acknowledged it are recorded. A poller reads
    ``change_log`` every few milliseconds and notes when each resourceVersion first becomes
    visible. Latency = visible - acknowledged (one machine, one monotonic clock across
    processes); see ``benchmarks._fresh``.
(c) Agent peak RSS (VmHWM of the agent process) once its initial sync has completed and
    it has watched for a few seconds: a 10000-object cluster and the N-object cluster of
    (a), each with its own fresh kubesim and agent. ``--agent-rss-only`` measures this
    alone: the initial syncs run (the agent needs its syncer), the COPY baseline of (a)
    and (b) do not.

Also reported: how the load was made (``freshness_load``), the writes/s achieved
(``achieved_rate_R``), writes never seen within 30 s (``freshness_missing_R``), and the
CPU seconds each process spent during the initial sync (``initial_sync_cpu_s``) and each
freshness run (``freshness_cpu_s_R``, HTTP writer processes included), which shows where
the time goes.
Progress goes to stderr; the last stdout line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from agent.discovery import DEFAULT_EXCLUDED
from benchmarks._copy import copy_rates
from benchmarks._fresh import Ack, ChangePoller, churn_load, percentile, wait_visible, writer
from benchmarks._procs import (
    Procs,
    cpu_seconds,
    drain,
    listening_ports,
    log,
    peak_rss_mb,
    postmaster_pid,
    reachable_tempdir,
    read_until,
)
from kube.resources import type_key
from syncer import embedded

SMALL = 10_000
SETTLE_S = 3.0  # watching after the initial sync before the agent's RSS is read
SYNC_TIMEOUT_S = 900.0
AUTOVACUUM_WAIT_S = 120.0


# -- the pieces ----------------------------------------------------------------------------------

@dataclass
class Syncer:
    ingest_url: str
    admin_url: str
    admin_token: str
    db_url: str
    pid: int
    postgres_pid: int


@dataclass
class Member:
    name: str
    url: str
    kubeconfig: Path
    expected: int  # objects the agent syncs
    by_type: dict[str, int]
    proc: asyncio.subprocess.Process


def generate_spec(n: int) -> str:
    """About ``n`` objects, shaped like a cluster: mostly pods, owned by replicasets."""
    deployments = max(n // 100, 1)
    configmaps, services, secrets, events = n // 50, n // 100, n // 100, n // 50
    namespaces, nodes = 20, max(n // 1000, 3)
    others = 2 * deployments + configmaps + services + secrets + events + namespaces + nodes + 2
    pods = max(n - others, 1)
    return (f"namespaces={namespaces},nodes={nodes},deployments={deployments},pods={pods},"
            f"configmaps={configmaps},services={services},secrets={secrets},events={events}")


async def start_syncer(procs: Procs, data_dir: Path) -> Syncer:
    # Info level: the "listening" lines name the ports bound (port 0); little else is logged.
    proc = await procs.start(
        "syncer", "-m", "kubepedia", "--log-level", "info", "serve", "--data-dir", str(data_dir),
        "--api-listen", "127.0.0.1:0", "--ingest-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
    ports = await listening_ports(procs, "syncer", proc, {"ingest", "api", "admin"}, limit_s=180)
    url = f"http://127.0.0.1:{ports['ingest']}"
    deadline = time.monotonic() + 180
    async with aiohttp.ClientSession() as session:
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"kubepedia serve exited:\n{procs.tail('syncer')}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"kubepedia serve not ready:\n{procs.tail('syncer')}")
            await asyncio.sleep(0.2)
    token = (data_dir / "admin.token").read_text().strip()
    pg = embedded.EmbeddedPostgres(data_dir=data_dir)
    admin_url = f"http://127.0.0.1:{ports['admin']}"
    return Syncer(url, admin_url, token, pg.url, proc.pid, postmaster_pid(pg.pgdata))


async def start_member(procs: Procs, work: Path, name: str, objects: int, seed: int) -> Member:
    kubeconfig = work / f"{name}.kubeconfig"
    started = time.monotonic()
    proc = await procs.start(
        f"kubesim-{name}", "-m", "kubesim", "serve", "--port", "0", "--name", name,
        "--generate", generate_spec(objects), "--seed", str(seed),
        "--kubeconfig-out", str(kubeconfig), "--watch-queue", "500000",
        "--history-events", "500000", "--bookmark-interval", "5", stdout_pipe=True)
    url = await read_until(proc, "serving on ", limit_s=600)
    asyncio.get_running_loop().create_task(drain(proc))
    async with aiohttp.ClientSession() as session, session.get(url + "/_kubesim/dump") as resp:
        dump = orjson.loads(await resp.read())["objects"]
    by_type = Counter(type_key(o["group"], o["resource"]) for o in dump)
    synced = {k: v for k, v in by_type.items() if k not in DEFAULT_EXCLUDED}
    member = Member(name, url, kubeconfig, sum(synced.values()), synced, proc)
    log(f"kubesim {name}: {member.expected} objects to sync ({dict(synced)}), "
        f"up in {time.monotonic() - started:.1f}s")
    return member


async def register(syncer: Syncer, name: str) -> str:
    headers = {"Authorization": f"Bearer {syncer.admin_token}"}
    body = {"name": name, "mode": "push", "settings": {}}
    async with aiohttp.ClientSession() as session, session.post(
            syncer.admin_url + "/admin/v1/clusters", data=orjson.dumps(body), headers=headers) as resp:
        payload = orjson.loads(await resp.read())
        if resp.status >= 300:
            raise RuntimeError(f"registering {name}: HTTP {resp.status} {payload}")
    return str(payload["token"])


async def start_agent(procs: Procs, syncer: Syncer, member: Member, token: str
                      ) -> asyncio.subprocess.Process:
    return await procs.start(
        f"agent-{member.name}", "-m", "kubepedia", "agent", "--cluster", member.name,
        "--syncer", syncer.ingest_url, "--kubeconfig", str(member.kubeconfig),
        "--log-level", "WARNING", env={"KUBEPEDIA_AGENT_TOKEN": token})


async def wait_synced(db: asyncpg.Connection, procs: Procs, agent: asyncio.subprocess.Process,
                      member: Member) -> float:
    """Poll until every type the member serves is watching with all its objects stored;
    returns the monotonic time it was first seen so."""
    last_report = time.monotonic()
    deadline = last_report + SYNC_TIMEOUT_S
    while True:
        rows = await db.fetch(
            "SELECT grp, resource, phase, object_count FROM sync_state WHERE cluster = $1",
            member.name)
        now = time.monotonic()
        watching = {type_key(r["grp"], r["resource"]): r["object_count"] for r in rows
                    if r["phase"] == "watching"}
        if all(watching.get(k) == v for k, v in member.by_type.items()):
            return now
        if agent.returncode is not None:
            raise RuntimeError(f"agent exited ({agent.returncode}):\n{procs.tail('agent-' + member.name)}")
        if now > deadline:
            raise RuntimeError(f"{member.name} not synced after {SYNC_TIMEOUT_S:.0f}s: {watching}")
        if now - last_report > 10:
            last_report = now
            log(f"  {member.name}: {sum(r['object_count'] for r in rows)}/{member.expected} objects, "
                f"{sum(k in watching for k in member.by_type)}/{len(member.by_type)} types watching")
        await asyncio.sleep(0.1)


async def stored_count(db: asyncpg.Connection, cluster: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM resources WHERE cluster = $1", cluster))


# -- (a) + (c): initial sync and the agent's memory ----------------------------------------------

def cpu_now(syncer: Syncer, member: Member, agent_pid: int | None = None) -> dict[str, float]:
    """CPU seconds used so far by each component (PostgreSQL: every server process)."""
    return {"agent": cpu_seconds(agent_pid) if agent_pid else 0.0,
            "syncer": cpu_seconds(syncer.pid),
            "kubesim": cpu_seconds(member.proc.pid),
            "postgres": cpu_seconds(syncer.postgres_pid, children=True)}


async def initial_sync(procs: Procs, syncer: Syncer, db: asyncpg.Connection, member: Member
                       ) -> tuple[asyncio.subprocess.Process, float, float, dict[str, float]]:
    """Start an agent for ``member``; returns it, the sync seconds, its peak RSS (MiB)
    after SETTLE_S seconds of watching and the CPU seconds each component spent syncing."""
    token = await register(syncer, member.name)
    before = cpu_now(syncer, member)
    started = time.monotonic()
    agent = await start_agent(procs, syncer, member, token)
    done = await wait_synced(db, procs, agent, member)
    seconds = done - started
    after = cpu_now(syncer, member, agent.pid)
    cpu = {k: after[k] - before[k] for k in after}
    stored = await stored_count(db, member.name)
    if stored != member.expected:
        raise RuntimeError(f"{member.name}: {stored} rows stored, {member.expected} expected")
    log(f"{member.name}: initial sync of {stored} objects in {seconds:.1f}s "
        f"({stored / seconds:.0f} objects/s); CPU seconds {_rounded(cpu)}")
    await asyncio.sleep(SETTLE_S)
    rss = peak_rss_mb(agent.pid)
    log(f"{member.name}: agent peak RSS {rss:.1f} MiB")
    return agent, seconds, rss, cpu


def _rounded(cpu: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 1) for k, v in cpu.items()}


# -- (b): freshness -----------------------------------------------------------------------------

async def autovacuum_done(db: asyncpg.Connection) -> None:
    """Wait (at most AUTOVACUUM_WAIT_S) until no autovacuum worker has run for a second: after
    an initial sync or a freshness run, vacuuming the tables it grew (and merging their GIN
    pending lists) takes the machine's CPU for tens of seconds, which a freshness run would
    otherwise measure as the store's latency."""
    started = time.monotonic()
    quiet = 0
    while quiet < 10 and time.monotonic() - started < AUTOVACUUM_WAIT_S:
        busy = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
        quiet = 0 if busy else quiet + 1
        await asyncio.sleep(0.1)
    log(f"waited {time.monotonic() - started:.1f}s for autovacuum to finish")


async def http_load(procs: Procs, member: Member, rate: float, duration: float, work: Path,
                    seed: int) -> tuple[list[Ack], int, float, float]:
    """Writer processes PATCH pod status at ``rate``/s; returns the acknowledged writes, the
    failed ones, the elapsed time and the writers' CPU seconds."""
    writers = max(1, math.ceil(rate / 1500))  # one client process keeps up with ~1500 PATCH/s
    outs = [work / f"writes-{int(rate)}-{n}.json" for n in range(writers)]
    started = [await procs.start(
        f"writer-{int(rate)}-{n}", "-m", "benchmarks.sync", "--write-load",
        f"{member.url},{rate / writers},{duration},{seed + n},{outs[n]}") for n in range(writers)]
    for proc in started:
        if await proc.wait() != 0:
            raise RuntimeError(f"writer failed:\n{procs.tail(f'writer-{int(rate)}-0')}")
        await procs.stop(proc)
    results = [orjson.loads(out.read_bytes()) for out in outs]
    acks: list[Ack] = [tuple(ack) for result in results for ack in result["acks"]]
    return (acks, sum(r["errors"] for r in results), max(r["elapsed"] for r in results),
            sum(r["cpu_s"] for r in results))


async def freshness(procs: Procs, syncer: Syncer, member: Member, agent_pid: int, rate: float,
                    duration: float, work: Path, seed: int, *,
                    load: str) -> tuple[dict[str, float], dict[str, float]]:
    """Latencies and rates at ``rate`` writes/s, and the CPU seconds each process spent
    meanwhile (HTTP writers' as they report it), which shows what limits a rate on a small
    machine. ``load``: ``churn`` (kubesim writes its own pods) or ``http`` (writer processes)."""
    before = cpu_now(syncer, member, agent_pid)
    async with ChangePoller(syncer.db_url, [member.name]) as poller:
        if load == "http":
            acks, errors, elapsed, writers_cpu = await http_load(procs, member, rate, duration, work, seed)
        else:
            acks, errors = await churn_load([member.url], rate, duration)
            elapsed, writers_cpu = duration, 0.0
        latencies = await wait_visible(poller, acks, [member.name])
    after = cpu_now(syncer, member, agent_pid)
    cpu = {k: after[k] - before[k] for k in after}
    cpu["writers"] = writers_cpu
    missing = len(acks) - len(latencies)
    achieved = len(acks) / elapsed
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    log(f"freshness at {rate:.0f}/s ({load}): {len(acks)} writes ({achieved:.0f}/s achieved, "
        f"{errors} errors, {missing} not seen within 30s), p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
        f"max {max(latencies):.0f} ms; CPU seconds {_rounded(cpu)}")
    return {"p50": p50, "p99": p99, "achieved": achieved, "missing": missing}, cpu


# -- the run -------------------------------------------------------------------------------------

async def run(objects: int, rates: list[float], duration: float, seed: int, keep: str,
              rss_only: bool = False, load: str = "churn") -> dict[str, Any]:
    result: dict[str, Any] = {"objects": objects, "freshness_load": load}
    with contextlib.ExitStack() as cleanup:
        if keep:
            work = Path(keep)
        else:
            work = Path(cleanup.enter_context(reachable_tempdir("kubepedia-bench-sync-")))
        async with Procs(work) as procs:
            log("starting kubepedia serve on a fresh embedded PostgreSQL")
            syncer = await start_syncer(procs, work / "data")
            db = await asyncpg.connect(syncer.db_url)
            try:
                # (a) and the big cluster of (c)
                big = await start_member(procs, work, "big", objects, seed)
                agent, sync_s, rss_big, cpu = await initial_sync(procs, syncer, db, big)
                sync_rate = big.expected / sync_s
                result.update({
                    "synced_objects": big.expected,
                    "initial_sync_s": round(sync_s, 2),
                    "initial_sync_objects_per_s": round(sync_rate),
                    "initial_sync_cpu_s": _rounded(cpu),
                    "pg_cpu_us_per_object": round(cpu["postgres"] * 1e6 / big.expected),
                })
                # (b) on the same cluster, agent watching
                for rate in [] if rss_only else rates:
                    await autovacuum_done(db)
                    fresh, fresh_cpu = await freshness(procs, syncer, big, agent.pid, rate, duration,
                                                       work, seed, load=load)
                    key = int(rate)
                    result.update({
                        f"freshness_p50_ms_{key}": round(fresh["p50"], 1),
                        f"freshness_p99_ms_{key}": round(fresh["p99"], 1),
                        f"achieved_rate_{key}": round(fresh["achieved"]),
                        f"freshness_missing_{key}": fresh["missing"],
                        f"freshness_cpu_s_{key}": _rounded(fresh_cpu),
                    })
                # After (b): its many COPYs (and their checkpoints) must not load the freshness runs.
                if not rss_only:
                    copy = await copy_rates(db, where="cluster = $1", args=(big.name,),
                                            spool=work / "copy-baseline.bin")
                    result.update({
                        "copy_objects_per_s": round(copy.uncompressed),
                        "copy_objects_per_s_uncompressed": round(copy.uncompressed),
                        "copy_objects_per_s_default": round(copy.default),
                        "initial_sync_vs_copy": round(sync_rate / copy.uncompressed, 3),
                        "initial_sync_vs_copy_default": round(sync_rate / copy.default, 3),
                    })
                if not rss_only:
                    result["agent_rss_mb_after_load"] = round(peak_rss_mb(agent.pid), 1)
                await procs.stop(agent)
                await procs.stop(big.proc)
                # (c) the small cluster
                small = await start_member(procs, work, "small", min(SMALL, objects), seed + 1)
                _, _, rss_small, _ = await initial_sync(procs, syncer, db, small)
                result.update({
                    "agent_rss_mb_10k": round(rss_small, 1),
                    "agent_rss_mb_100k": round(rss_big, 1),
                    "agent_rss_big_vs_small": round(rss_big / rss_small, 3),
                })
            finally:
                await db.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--rates", default="1000,5000", help="writes/s for the freshness runs")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per freshness run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--load", choices=("churn", "http"), default="churn",
                        help="who writes for the freshness runs: the cluster itself, or HTTP clients")
    parser.add_argument("--work-dir", default="",
                        help="keep logs and the database in this new directory (default: a temp dir)")
    parser.add_argument("--agent-rss-only", action="store_true",
                        help="measure (c) only: the agent's peak RSS at 10000 and N objects")
    parser.add_argument("--write-load", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_load:
        url, rate, duration, seed, out = args.write_load.split(",")
        asyncio.run(writer([url], float(rate), float(duration), int(seed), out))
        return
    rates = [float(r) for r in args.rates.split(",") if r]
    if args.work_dir:
        Path(args.work_dir).mkdir(parents=True, exist_ok=False)
    result = asyncio.run(run(args.objects, rates, args.duration, args.seed, args.work_dir,
                             rss_only=args.agent_rss_only, load=args.load))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
