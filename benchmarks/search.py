"""Search, reports and history at scale, each query also against the API with index scans off.

    python -m benchmarks.search [--objects N --clusters C] [--data-dir D]

N objects (default 1,000,000) in C clusters (default 100), with a tenth of them changed
three times over the day before the run (``benchmarks.fleet``: what is loaded, how, and
how a kept data dir gets only what it lacks).

The read API runs as its own process, twice: as it serves, and as a baseline whose
sessions have index scans off (``enable_indexscan``, ``enable_bitmapscan`` and
``enable_indexonlyscan`` in its database URL, which asyncpg passes to the server as
session settings; the API process reports what its pool's sessions run with, and a
baseline that has them on stops the run). Through HTTP, p50/p99 of (each warmed once,
then REPEATS requests on the API and BASELINE_REPEATS on the baseline; parameters vary
between requests, taken from the loaded data):

- ``fuzzy_name``: a 4 to 8 character piece of a pod name, as Clusterpedia's
  ``internalstorage.clusterpedia.io/fuzzy-name`` label, on the Clusterpedia path, limit 50;
- ``owner``: the pods of one ReplicaSet (``ownerUID``), all clusters;
- ``container_image``: ``spec.containers[].image=<image>``, limit 100;
- ``order_created``: the newest 100 pods (``orderby=created_at desc``);
- ``images_report``, ``count_report``: ``/kubepedia/v1/reports/{images,counts}``;
- ``object_history``: a pod changed three times;
- ``namespace_changes``: one namespace's changes in a day;
- ``as_of``: one namespace's pods as they were at a time of that day, limit 100.

A Deployment's pods by owner name (``ownerSeniority=1``) are asked for once, not timed.
Every answer is checked (status 200, and items that are what the query selects); a query
the API refuses, or answers without applying its parameter, is reported with the answer's
status and body under ``failed``, and the run exits 1 once its figures are printed. A
baseline request that runs past its statement timeout counts as that timeout (a lower
bound; ``noindex_timed_out`` names them). ``plans`` holds the scans of each query's SQL
as the query builder composes it (EXPLAIN); a sequential scan of ``resources`` or
``change_log`` is a failure. The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from apiserver.history import CHANGES_LIMIT, HISTORY_LIMIT
from apiserver.objects import Request, target_of
from apiserver.params import MAX_LIMIT, list_options
from apiserver.query import EVERYTHING_SCOPE, Target, compiled, list_statement
from apiserver.query_history import (
    ChangeFilter,
    ObjectKey,
    as_of_point,
    as_of_statement,
    changes_statement,
    object_history_statement,
    window_point,
)
from apiserver.query_reports import REPORTS, Filters
from benchmarks._procs import Procs, log, read_until
from benchmarks.api import AUTH, LOADERS, SCAN_SETTINGS, TOKEN, TOKEN_ENV, database, pct, scans
from benchmarks.fleet import JSON, PODS, ROUNDS, cluster_name, prepare
from kube.status import StatusError
from syncer.db import create_pool

REPEATS, BASELINE_REPEATS = 100, 5
BASELINE_TIMEOUT_S = 180  # statement_timeout of the baseline's sessions
NO_INDEX = {name: "off" for name in SCAN_SETTINGS}
BASELINE = {**NO_INDEX, "statement_timeout": str(BASELINE_TIMEOUT_S * 1000)}
# Pages of 100, a dashboard's page: at 500 a page's cost is mostly rendering 500 objects,
# which benchmarks.api measures for every list.
SEARCH_PAGE = "100"
ORDER_CREATED = {"orderby": "created_at desc", "limit": SEARCH_PAGE}
QUERIES = ("fuzzy_name", "owner", "container_image", "order_created", "images_report", "count_report",
           "object_history", "namespace_changes", "as_of")
FUZZY = "internalstorage.clusterpedia.io/fuzzy-name"
CLUSTERPEDIA_PODS = "/apis/clusterpedia.io/v1beta1/resources/api/v1/pods"


# -- what to ask, taken from the loaded data ---------------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class Facts:
    pods: list[asyncpg.Record]  # cluster, namespace, name, owner_uid, pod_images of sampled pods
    changed: list[tuple[str, str, str]]  # (cluster, namespace, name) of pods changed ROUNDS times
    deployment: tuple[str, str, frozenset[str]]  # (cluster, name, its ReplicaSets' uids)
    since: datetime  # a day of changes starts
    newest: int  # the change log's head

    @property
    def owners(self) -> list[str]:
        return sorted({p["owner_uid"] for p in self.pods if p["owner_uid"]})

    @property
    def images(self) -> list[str]:
        return sorted({image for p in self.pods for image in p["pod_images"] or ()})

    @property
    def namespaces(self) -> list[str]:
        return sorted({p["namespace"] for p in self.pods})

    def moment(self, i: int) -> datetime:
        """A time of the day of changes (the n-th of 24 hours, going round)."""
        return self.since + timedelta(hours=1 + i % 22, minutes=i % 60)


_SAMPLE = """
SELECT cluster, namespace, name, owner_uid, pod_images FROM resources
WHERE cluster = ANY($1::text[]) AND grp = '' AND resource = 'pods' AND namespace = ANY($2::text[])
ORDER BY cluster, namespace, name
"""
_CHANGED = """
SELECT cluster, namespace, name FROM change_log
WHERE grp = '' AND resource = 'pods' AND type = 'MODIFIED' ORDER BY seq DESC LIMIT 500
"""
# The Deployment that owns a ReplicaSet, and all of its ReplicaSets (found by their owner uid).
_DEPLOYMENT = """
SELECT d.cluster, d.name,
       ARRAY(SELECT s.uid FROM resources s WHERE s.owner_uid = d.uid AND s.cluster = d.cluster
             AND s.grp = 'apps' AND s.resource = 'replicasets') AS replicasets
FROM resources rs JOIN resources d ON d.uid = rs.owner_uid AND d.cluster = rs.cluster
WHERE rs.uid = $1 AND rs.grp = 'apps' AND rs.resource = 'replicasets'
  AND d.grp = 'apps' AND d.resource = 'deployments'
"""


async def facts_of(pool: asyncpg.Pool, clusters: int) -> Facts:
    spread = sorted({cluster_name(i * clusters // 10) for i in range(10)})
    rows = await pool.fetch(_SAMPLE, spread, ["ns-003", "ns-011", "ns-017"])
    pods = rows[::max(1, len(rows) // 200)]
    changed = list(dict.fromkeys((r["cluster"], r["namespace"], r["name"])
                                 for r in await pool.fetch(_CHANGED)))
    owned = [p for p in pods if p["owner_uid"]]
    if not pods or not changed or not owned:
        raise RuntimeError(f"the store lacks what the queries need: {len(pods)} sampled pods, {len(owned)} of"
                           f" them owned, {len(changed)} changed pods; load it with benchmarks.search")
    deployment = await pool.fetchrow(_DEPLOYMENT, owned[0]["owner_uid"])
    if deployment is None:
        raise RuntimeError(f"pod {owned[0]['name']} is owned by {owned[0]['owner_uid']}, no ReplicaSet of a"
                           " Deployment; load the store with benchmarks.search")
    first = await pool.fetchval("SELECT at FROM change_log WHERE seq = (SELECT min(seq) FROM change_log"
                                " WHERE type = 'MODIFIED')")
    return Facts(pods=pods, changed=changed, since=first.replace(microsecond=0),
                 deployment=(deployment["cluster"], deployment["name"], frozenset(deployment["replicasets"])),
                 newest=int(await pool.fetchval("SELECT max(seq) FROM change_log")))


def substrings(names: Sequence[str], count: int) -> list[str]:
    """``count`` pieces of 4 to 8 characters of the names, each starting and ending with a
    letter or digit (a label value must)."""
    found: list[str] = []
    for i in range(count * 4):
        name, size = names[i % len(names)], 4 + i % 5
        start = (i * 7) % max(1, len(name) - size + 1)
        piece = name[start:start + size]
        if len(piece) == size and piece[0].isalnum() and piece[-1].isalnum():
            found.append(piece)
        if len(found) == count:
            break
    return found


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the queries -------------------------------------------------------------------------------

Check = Callable[[JSON], str | None]  # what is wrong with an answer, or None
Asked = tuple[str, dict[str, str], Check]  # a request's path and parameters, and its answer's check


@dataclass(frozen=True, kw_only=True, slots=True)
class Query:
    name: str
    request: Callable[[int], Asked]  # the i-th request
    probe: dict[str, str] = field(default_factory=dict)  # added to the first request only


def _items(check: Callable[[JSON], bool], what: str) -> Check:
    """Items there, and each one ``check``-ed (``what`` says what it should be)."""
    def checked(body: JSON) -> str | None:
        items = body.get("items")
        if not items:
            return f"no items, expected {what}"
        wrong = [i for i in items if not check(i)]
        if wrong:
            meta = wrong[0].get("metadata", wrong[0])
            return f"{len(wrong)} of {len(items)} items are not {what}, e.g. {orjson.dumps(meta)[:300]!r}"
        return None
    return checked


def _owned_by(uids: frozenset[str]) -> Callable[[JSON], bool]:
    return lambda pod: any(r.get("uid") in uids for r in pod["metadata"].get("ownerReferences", []))


def _newest_first(body: JSON) -> str | None:
    times = [i["metadata"].get("creationTimestamp", "") for i in body.get("items", [])]
    if not times:
        return "no items"
    if times != sorted(times, reverse=True):
        return f"items are not newest first: {times[:5]}"
    return None


def queries(facts: Facts) -> list[Query]:
    names = substrings([p["name"] for p in facts.pods], 50)
    owners, images, namespaces = facts.owners, facts.images, facts.namespaces

    def fuzzy(i: int) -> Asked:
        piece = names[i % len(names)]
        return (CLUSTERPEDIA_PODS, {"labelSelector": f"{FUZZY}={piece}", "limit": "50"},
                _items(lambda p: piece in p["metadata"]["name"], f"pods whose name holds {piece!r}"))

    def owner(i: int) -> Asked:
        uid = owners[i % len(owners)]
        return "/api/v1/pods", {"ownerUID": uid}, _items(_owned_by(frozenset({uid})), f"pods owned by {uid}")

    def image(i: int) -> Asked:
        wanted = images[i % len(images)]
        return ("/api/v1/pods", {"fieldSelector": f"spec.containers[].image={wanted}", "limit": SEARCH_PAGE},
                _items(lambda p: any(c.get("image") == wanted for c in p["spec"]["containers"]),
                       f"pods running {wanted}"))

    def history(i: int) -> Asked:
        where, namespace, name = facts.changed[i % len(facts.changed)]
        params = {"cluster": where, "resource": "pods", "namespace": namespace, "name": name}
        return ("/kubepedia/v1/history/object", params,
                lambda body: None if sum(e["type"] == "MODIFIED" for e in body.get("items", [])) >= ROUNDS
                else f"fewer than {ROUNDS} MODIFIED entries: {[e['type'] for e in body.get('items', [])]}")

    def window(i: int) -> Asked:
        params = {"namespace": namespaces[i % len(namespaces)], "since": rfc3339(facts.since),
                  "before": rfc3339(facts.since + timedelta(days=1))}
        return "/kubepedia/v1/history/changes", params, _items(lambda e: True, "changes")

    def as_of(i: int) -> Asked:
        namespace = namespaces[i % len(namespaces)]
        params = {"asOf": rfc3339(facts.moment(i)), "limit": SEARCH_PAGE}
        return (f"/api/v1/namespaces/{namespace}/pods", params,
                _items(lambda p: p["metadata"]["namespace"] == namespace, f"pods of {namespace}"))

    def fixed(path: str, params: dict[str, str], check: Check) -> Callable[[int], Asked]:
        return lambda i: (path, params, check)

    return [
        Query(name="fuzzy_name", request=fuzzy),
        # Without ownerUID the list is every pod: the first request asks for one page only.
        Query(name="owner", request=owner, probe={"limit": "50"}),
        Query(name="container_image", request=image),
        Query(name="order_created", request=fixed("/api/v1/pods", ORDER_CREATED, _newest_first)),
        Query(name="images_report", request=fixed("/kubepedia/v1/reports/images", {},
                                                  _items(lambda r: True, "rows"))),
        Query(name="count_report", request=fixed("/kubepedia/v1/reports/counts", {},
                                                 _items(lambda r: True, "rows"))),
        Query(name="object_history", request=history),
        Query(name="namespace_changes", request=window),
        Query(name="as_of", request=as_of),
    ]


class Unserved(RuntimeError):
    """The API answered a query with an error, or with items the query does not select."""


class TimedOut(RuntimeError):
    """A baseline request ran past its statement timeout."""


async def _ask(session: aiohttp.ClientSession, api: str, query: Query, i: int, *, probe: bool = False,
               timeout_s: float | None = None) -> float:
    """One request, checked; its time in ms (the whole body read, not decoded)."""
    path, params, check = query.request(i)
    params = {**params, **query.probe} if probe else params
    start = time.perf_counter()
    async with session.get(api + path, params=params) as resp:
        raw = await resp.read()
    took = (time.perf_counter() - start) * 1000
    asked = f"GET {path}?{'&'.join(f'{k}={v}' for k, v in params.items())}"
    if timeout_s is not None and resp.status == 503 and took >= timeout_s * 900:
        raise TimedOut(f"{query.name}: {asked} ran past the statement timeout ({timeout_s:.0f} s)")
    if resp.status != 200:
        raise Unserved(f"{query.name}: {asked} answered {resp.status}: {raw[:500].decode(errors='replace')}")
    problem = check(orjson.loads(raw))
    if problem:
        raise Unserved(f"{query.name}: {asked} answered 200 but {problem}")
    return took


async def latencies(session: aiohttp.ClientSession, api: str, query: Query, repeats: int, *,
                    timeout_s: float | None = None) -> list[float]:
    # One request first, not timed: the query's pages come from disk once, after which a
    # serving database keeps them cached; the figures are for that steady state.
    await _ask(session, api, query, 0, probe=True, timeout_s=timeout_s)
    return [await _ask(session, api, query, i, timeout_s=timeout_s) for i in range(repeats)]


async def owner_name_smoke(session: aiohttp.ClientSession, api: str, facts: Facts) -> str:
    """The pods of a Deployment (owner's owner, ``ownerSeniority=1``) in its cluster: once, not timed."""
    cluster, name, replicasets = facts.deployment
    smoke = Query(name="owner_name", request=lambda i: (
        "/api/v1/pods", {"ownerName": name, "ownerGR": "deployments.apps", "ownerSeniority": "1",
                         "clusters": cluster, "limit": "500"},
        _items(_owned_by(replicasets), f"pods of Deployment {cluster}/{name}")))
    try:
        await _ask(session, api, smoke, 0)
    except Unserved as exc:
        log(str(exc))
        return str(exc)
    return "ok"


@dataclass(kw_only=True, slots=True)
class Run:
    """What a run found: times per query, and what went wrong."""

    times: dict[str, list[float]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    timed_out: dict[str, float] = field(default_factory=dict)  # query -> the timeout, in ms


async def measure(api: str, todo: Sequence[Query], repeats: int, *, timeout_s: float | None = None) -> Run:
    run = Run()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None), headers=AUTH) as session:
        for query in todo:
            log(f"{query.name} at {api}")
            try:
                run.times[query.name] = await latencies(session, api, query, repeats, timeout_s=timeout_s)
            except Unserved as exc:
                log(str(exc))
                run.failed[query.name] = str(exc)
            except TimedOut as exc:
                log(str(exc))
                run.timed_out[query.name] = (timeout_s or 0) * 1000
    return run


# -- plans, through the query builder ----------------------------------------------------------

def search_sql(query: Mapping[str, str]) -> tuple[str, list[Any]]:
    """The SQL the read API composes for a pod list with these parameters (an all-cluster
    list, its first page): parsed as ``apiserver.objects`` parses a request, composed by
    ``apiserver.query``. A parameter it refuses raises its ``StatusError``. This is the one
    seam to the builder (the plan test uses it too): where the list handler hands more of
    the request to ``target_of``, so must this."""
    opts = list_options(query, "application/json")
    target = target_of(Request(rtype=PODS, cluster=None, namespace=None, name=None), opts, query)
    # As the list handler composes it when no pod's images were too long to index (it asks,
    # per page): the fleets' pods have a handful of containers each.
    target = replace(target, unindexed_images=False)
    return compiled(list_statement(target, EVERYTHING_SCOPE, limit=(opts.limit or MAX_LIMIT) + 1))


def unapplied(query: Mapping[str, str], sql: str, params: Sequence[Any]) -> str | None:
    """Which search parameter the composed SQL ignores (the builder drops what it does not
    know), or None: each value must reach the SQL as a bound parameter, the fuzzy name must
    not be matched as a label, and ``orderby`` must order the rows."""
    bound = repr(params)
    for name in ("ownerUID", "ownerName"):
        if name in query and query[name] not in bound:
            return f"{name} is not composed into the query"
    if FUZZY in query.get("labelSelector", "") and FUZZY in bound:
        return f"the {FUZZY} label is matched as a label, not as a piece of the name"
    if "orderby" in query and "created_at" not in sql.rpartition("ORDER BY")[2]:
        return "orderby is not composed into the query's ORDER BY"
    return None


def composed_search(query: Mapping[str, str]) -> tuple[str, list[Any]] | str:
    """A search's SQL (``search_sql``), or why the builder does not compose it yet."""
    try:
        sql, params = search_sql(query)
    except StatusError as exc:
        return f"the read API refuses it: {exc}"
    why = unapplied(query, sql, params)
    return f"{why} (as benchmarks.search.search_sql composes it)" if why else (sql, params)


def search_queries(*, piece: str, owner: str, deployment: tuple[str, str],
                   image: str) -> dict[str, dict[str, str]]:
    """Each search's parameters: a piece of a name, a ReplicaSet's uid, a (cluster,
    Deployment name) and an image in use."""
    return {
        "fuzzy_name": {"labelSelector": f"{FUZZY}={piece}", "limit": "50"},
        "owner": {"ownerUID": owner},
        "owner_name": {"ownerName": deployment[1], "ownerGR": "deployments.apps", "ownerSeniority": "1",
                       "clusters": deployment[0]},
        "container_image": {"fieldSelector": f"spec.containers[].image={image}", "limit": SEARCH_PAGE},
        "order_created": ORDER_CREATED,
    }


def _composed(facts: Facts, window: asyncpg.Record, as_of_seq: int) -> dict[str, tuple[str, list[Any]]]:
    """The SQL of the reports and history queries, as their handlers compose it."""
    cluster, namespace, name = facts.changed[0]
    target = Target(group="", version="v1", resource="pods", kind="Pod", namespace=facts.namespaces[0])
    key = ObjectKey(group="", resource="pods", namespace=namespace, name=name, cluster=cluster)
    changes = ChangeFilter(namespace=facts.namespaces[0], since=facts.since,
                           before=facts.since + timedelta(days=1))
    return {
        "images_report": compiled(REPORTS["images"].statement(Filters(), EVERYTHING_SCOPE)),
        "count_report": compiled(REPORTS["counts"].statement(Filters(), EVERYTHING_SCOPE)),
        "object_history": compiled(object_history_statement(key, EVERYTHING_SCOPE, upto=facts.newest,
                                                            after=None, limit=HISTORY_LIMIT + 1)),
        "namespace_changes": compiled(changes_statement(changes, EVERYTHING_SCOPE, lo=window["lo"],
                                                        hi=window["hi"] or 0, after=None,
                                                        limit=CHANGES_LIMIT + 1)),
        "as_of": compiled(as_of_statement(target, EVERYTHING_SCOPE, seq=as_of_seq,
                                          limit=int(SEARCH_PAGE) + 1)),
    }


FULL_SCANS = re.compile(r"^Seq Scan (resources|change_log)$")


async def plans(pool: asyncpg.Pool, facts: Facts) -> tuple[dict[str, str], dict[str, str]]:
    """The scans of each query's plan (outermost first), and what is wrong: a search the
    builder does not compose yet, or a sequential scan of ``resources`` or ``change_log``."""
    found: dict[str, str] = {}
    failed: dict[str, str] = {}
    statements: dict[str, tuple[str, list[Any]]] = {}
    searches = search_queries(piece=substrings([facts.pods[0]["name"]], 1)[0], owner=facts.owners[0],
                              deployment=facts.deployment[:2], image=facts.images[0])
    for name, query in searches.items():
        composed = composed_search(query)
        if isinstance(composed, str):
            failed[name] = f"not composed: {composed}"
        else:
            statements[name] = composed
    async with pool.acquire() as conn:
        await conn.execute("SET plan_cache_mode = force_custom_plan")  # as the read API plans
        sql, params = compiled(window_point(since=facts.since, before=facts.since + timedelta(days=1)))
        window = await conn.fetchrow(sql, *params)
        sql, params = compiled(as_of_point(facts.moment(0)))
        as_of_seq = (await conn.fetchrow(sql, *params))["seq"]
        statements.update(_composed(facts, window, as_of_seq))
        for name, (sql, params) in statements.items():
            nodes = scans((await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *params))[0]["Plan"])
            found[name] = "; ".join(nodes)
            log(f"plan {name}: {found[name]}")
            if any(FULL_SCANS.match(n) for n in nodes):
                failed[name] = f"a sequential scan: {found[name]}"
    for name, problem in failed.items():
        found.setdefault(name, problem)
    return found, failed


# -- the run -----------------------------------------------------------------------------------

def with_settings(url: str, settings: Mapping[str, str]) -> str:
    """``url`` with session settings as query parameters (asyncpg passes the ones it does not
    know to the server)."""
    return url + ("&" if "?" in url else "?") + "&".join(f"{k}={v}" for k, v in settings.items())


async def start_api(procs: Procs, name: str,
                    url: str) -> tuple[asyncio.subprocess.Process, str, dict[str, str]]:
    """The read API as a process (``benchmarks.api --serve-api``): the process, its URL, and
    the scan settings its pool's sessions run with."""
    proc = await procs.start(name, "-m", "benchmarks.api", "--serve-api", url, stdout_pipe=True,
                             env={TOKEN_ENV: TOKEN})  # the one token it accepts (benchmarks.api)
    port, *settings = (await read_until(proc, "port=", 120)).split()
    return proc, f"http://127.0.0.1:{port}", dict(s.split("=", 1) for s in settings)


def figures(indexed: Run, baseline: Run) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in QUERIES:
        times, base = indexed.times.get(name), baseline.times.get(name)
        p99 = pct(times, 0.99) if times else None
        base_p99 = pct(base, 0.99) if base else baseline.timed_out.get(name)
        out[f"{name}_p50_ms"] = pct(times, 0.5) if times else None
        out[f"{name}_p99_ms"] = p99
        out[f"{name}_noindex_p99_ms"] = base_p99
        out[f"{name}_vs_noindex"] = round(p99 / base_p99, 4) if p99 is not None and base_p99 else None
    return out


async def run(objects: int, clusters: int, keep: Path | None) -> tuple[dict[str, Any], dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="kubepedia-bench-search-") as tmp:
        os.chmod(tmp, 0o755)  # the embedded server's user must reach the data dir inside
        async with Procs(Path(tmp)) as procs, database(keep or Path(tmp) / "data") as url:
            pool = await create_pool(url, min_size=1, max_size=LOADERS + 1)
            try:
                await prepare(pool, procs, objects=objects, clusters=clusters)
                facts = await facts_of(pool, clusters)
                chosen, failed = await plans(pool, facts)
                todo = queries(facts)
                proc, api, _ = await start_api(procs, "api", url)
                indexed = await measure(api, todo, REPEATS)
                async with aiohttp.ClientSession(headers=AUTH) as session:
                    smoke = await owner_name_smoke(session, api, facts)
                if smoke != "ok":
                    failed["owner_name"] = smoke
                await procs.stop(proc)
                proc, api, settings = await start_api(procs, "api-noindex", with_settings(url, BASELINE))
                if any(settings.get(k) != v for k, v in NO_INDEX.items()):
                    raise RuntimeError(f"the baseline API's sessions run with {settings}, not {NO_INDEX}: its"
                                       " database URL's settings did not reach the server")
                baseline = await measure(api, [q for q in todo if q.name in indexed.times], BASELINE_REPEATS,
                                         timeout_s=BASELINE_TIMEOUT_S)
                failed.update(indexed.failed)
                failed.update({f"{k}_noindex": v for k, v in baseline.failed.items()})
                result = {
                    "objects": int(await pool.fetchval("SELECT count(*) FROM resources")),
                    "clusters": int(await pool.fetchval("SELECT count(*) FROM clusters")),
                    "changes": int(await pool.fetchval("SELECT count(*) FROM change_log"
                                                       " WHERE type = 'MODIFIED'")),
                    **figures(indexed, baseline),
                    "noindex_timed_out": sorted(baseline.timed_out),
                    "owner_name_smoke": smoke,
                    "plans": chosen,
                    "failed": failed,
                }
                return result, failed
            finally:
                await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep the database here and reuse it on the next run (what it lacks is loaded);"
                        " the default is a temporary one")
    args = parser.parse_args()
    result, failed = asyncio.run(run(args.objects, args.clusters, args.data_dir))
    print(orjson.dumps(result).decode(), flush=True)
    if failed:
        log("failed: " + "; ".join(f"{name}: {why}" for name, why in failed.items()))
        sys.exit(1)


if __name__ == "__main__":
    main()
