"""The fleet the search benchmark (``benchmarks.search``) reads: loaded through the ingest
core, then given a day of history.

N objects in C clusters, as agents send them (one snapshot per cluster and type):
namespaces, nodes, Deployments owning ReplicaSets owning Pods (controller
ownerReferences), and events. Ten kubesim servers make the templates (as for
``benchmarks.api``); every cluster's copy gets names, uids, creation times and images of
its own, so clusters differ: a ReplicaSet's hash (and so its pods' names) is the
cluster's, and app images follow the cluster's rollout wave (288 app images across the
fleet, and kubesim's few sidecar images). Then history: a tenth of the objects of each
cluster and type is changed three times (MODIFIED batches through the ingest core), and
the change log is spread over the day before the run.

Each stage is found done or not on its own, so a kept data dir gets only what it lacks:
a type's snapshot in a cluster is done when its checkpoint is committed, a history round
of a (cluster, type) when the checkpoint its batch commits says so, and the spreading
when the log spans more than a day.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from benchmarks._procs import Procs, log
from benchmarks.api import LOADERS, SIMS, ingest, list_all, start_sims
from kube.resources import ResourceType
from kubesim import objects as kubesim_objects
from kubesim.resources import BUILTIN
from syncer.ingest import Store

JSON = dict[str, Any]
TYPES = {t.resource: t for t in BUILTIN if t.resource in
         ("namespaces", "nodes", "deployments", "replicasets", "pods", "events")}
LOAD_ORDER = tuple(TYPES[r] for r in ("namespaces", "nodes", "deployments", "replicasets", "pods", "events"))
PODS = TYPES["pods"]
HISTORY_SHARE = 10  # every tenth object of each cluster and type is changed ...
ROUNDS = 3  # ... this many times
CREATED_FROM = datetime(2026, 1, 1, tzinfo=UTC)
CREATED_SPAN_S = 180 * 86400
# Images: app containers run one of 48 repositories at one of 6 versions (288 images across
# the fleet; a cluster's wave decides how far its rollouts are), sidecars kubesim's few.
IMAGE_REPOS = tuple(f"registry.example.com/{team}/{app}" for team in ("core", "shop", "data", "edge")
                    for app in kubesim_objects.APPS)
IMAGE_TAGS = tuple(f"v2.{minor}.0" for minor in range(6))
WAVES = 3


def cluster_name(index: int) -> str:
    return f"c-{index:03d}"


# -- the fleet ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class Shape:
    """What kubesim generates for one cluster of ``per_cluster`` objects: 22 namespaces
    (default, kube-system and ns-000 .. ns-019), 20 nodes, an event per 50 objects, and
    the rest Deployments, ReplicaSets and Pods, six pods per ReplicaSet."""

    deployments: int
    pods: int
    events: int

    @classmethod
    def of(cls, per_cluster: int) -> Shape:
        events = per_cluster // 50
        rest = max(per_cluster - 22 - 20 - events, 8)
        deployments = rest // 8
        return cls(deployments=deployments, pods=rest - 2 * deployments, events=events)

    def generate(self) -> str:
        return (f"namespaces=20,nodes=20,deployments={self.deployments},pods={self.pods},"
                f"events={self.events}")


Template = dict[str, list[JSON]]  # resource -> one kubesim server's objects


def _digest(key: str, size: int) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=size).digest()


def _uid(key: str) -> str:
    return str(uuid.UUID(bytes=_digest(key, 16), version=4))


def _created(key: str) -> str:
    moment = CREATED_FROM + timedelta(seconds=zlib.crc32(key.encode()) % CREATED_SPAN_S)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def image_of(container: str, app: int, wave: int) -> str:
    """The image a container of Deployment ``app-<app>`` runs in a cluster of ``wave``."""
    if container == "app":
        tag = IMAGE_TAGS[(app // len(IMAGE_REPOS) + wave) % len(IMAGE_TAGS)]
        return f"{IMAGE_REPOS[app % len(IMAGE_REPOS)]}:{tag}"
    images = kubesim_objects.IMAGES
    return images[(app + zlib.crc32(container.encode())) % len(images)]


def _spec_images(spec: JSON, app: int, wave: int) -> JSON:
    containers = [{**c, "image": image_of(c["name"], app, wave)} for c in spec.get("containers", [])]
    return {**spec, "containers": containers}


def _app_number(name: str) -> int:
    number = name.removeprefix("app-")
    return int(number) if number.isdigit() else zlib.crc32(name.encode())


@dataclass(frozen=True, kw_only=True, slots=True)
class _Copier:
    """One cluster's copies of a template's objects: identities and creation times of its
    own, images of its rollout wave."""

    cluster: str
    wave: int

    def meta(self, rtype: ResourceType, obj: JSON, name: str | None = None) -> JSON:
        meta = obj["metadata"]
        name = name or meta["name"]
        key = f"{self.cluster}/{rtype.kind}/{meta.get('namespace', '')}/{name}"
        return {**meta, "name": name, "uid": _uid(key), "creationTimestamp": _created(key)}

    def plain(self, rtype: ResourceType, obj: JSON) -> JSON:
        return {**obj, "apiVersion": rtype.api_version, "kind": rtype.kind, "metadata": self.meta(rtype, obj)}

    def owned(self, rtype: ResourceType, obj: JSON, *, owner: JSON, name: str, template_hash: str,
              app: int) -> JSON:
        """A copy named ``name`` whose controller is ``owner`` (a copy already)."""
        meta = self.meta(rtype, obj, name)
        meta.update(labels={**meta.get("labels", {}), "pod-template-hash": template_hash},
                    ownerReferences=[kubesim_objects.owner_reference(owner)])
        return imaged({**obj, "apiVersion": rtype.api_version, "kind": rtype.kind, "metadata": meta},
                       app, self.wave)


def imaged(obj: JSON, app: int, wave: int) -> JSON:
    """Images by Deployment and wave: in a pod's spec and container statuses, and in the pod
    template of a Deployment or ReplicaSet."""
    spec = obj.get("spec", {})
    if "template" in spec:
        template = {**spec["template"], "spec": _spec_images(spec["template"]["spec"], app, wave)}
        return {**obj, "spec": {**spec, "template": template}}
    status = obj.get("status", {})
    statuses = [{**s, "image": image_of(s["name"], app, wave)} for s in status.get("containerStatuses", [])]
    return {**obj, "spec": _spec_images(spec, app, wave), "status": {**status, "containerStatuses": statuses}}


def cluster_objects(template: Template, index: int) -> dict[str, list[JSON]]:
    """Cluster ``index``'s objects, copied from a template. Deployments keep their names (the
    same app runs in many clusters); a ReplicaSet's hash, and so its pods' names, are the
    cluster's own."""
    copier = _Copier(cluster=cluster_name(index), wave=index % WAVES)
    out = {r: [copier.plain(TYPES[r], o) for o in template[r]] for r in ("namespaces", "nodes", "events")}
    copies: dict[str, JSON] = {}  # template uid -> its copy
    apps: dict[str, int] = {}  # template uid -> the number of the Deployment it belongs to
    out["deployments"] = []
    for obj in template["deployments"]:
        uid, app = obj["metadata"]["uid"], _app_number(obj["metadata"]["name"])
        copies[uid], apps[uid] = imaged(copier.plain(TYPES["deployments"], obj), app, copier.wave), app
        out["deployments"].append(copies[uid])
    for resource in ("replicasets", "pods"):
        out[resource] = []
        for obj in template[resource]:
            ref = obj["metadata"]["ownerReferences"][0]
            owner, app = copies[ref["uid"]], apps[ref["uid"]]
            if resource == "replicasets":
                template_hash = _digest(copier.cluster + obj["metadata"]["name"], 5).hex()
                name = f"{owner['metadata']['name']}-{template_hash}"
            else:  # kubesim names a pod after its ReplicaSet: <replicaset>-<suffix><n>
                template_hash = owner["metadata"]["labels"]["pod-template-hash"]
                name = f"{owner['metadata']['name']}-{obj['metadata']['name'][len(ref['name']) + 1:]}"
            copy = copier.owned(TYPES[resource], obj, owner=owner, name=name, template_hash=template_hash,
                                app=app)
            copies[obj["metadata"]["uid"]], apps[obj["metadata"]["uid"]] = copy, app
            out[resource].append(copy)
    return out


async def fleet_templates(procs: Procs, shape: Shape, count: int) -> list[Template]:
    sims = await start_sims(procs, shape.generate(), count)
    async with aiohttp.ClientSession() as session:
        return [{rtype.resource: await list_all(session, url, rtype.list_path()) for rtype in LOAD_ORDER}
                for url in sims]


# -- loading -----------------------------------------------------------------------------------

async def loaded_types(pool: asyncpg.Pool) -> dict[tuple[str, str], str]:
    """(cluster, resource) -> committed checkpoint of every type whose snapshot ended."""
    rows = await pool.fetch("SELECT cluster, resource, checkpoint FROM sync_state"
                            " WHERE checkpoint IS NOT NULL")
    return {(r["cluster"], r["resource"]): r["checkpoint"] for r in rows}


_OWNED_PODS = ("SELECT EXISTS (SELECT 1 FROM resources WHERE owner_uid IS NOT NULL"
               " AND grp = '' AND resource = 'pods')")


async def load(pool: asyncpg.Pool, procs: Procs, *, objects: int, clusters: int) -> bool:
    """Snapshot every (cluster, type) not loaded yet, LOADERS clusters at a time; True if
    anything was loaded."""
    done = await loaded_types(pool)
    if any(resource == "pods" for _, resource in done) and not await pool.fetchval(_OWNED_PODS):
        raise RuntimeError("the pods this data dir holds have no controller owners (benchmarks.api loads"
                           " such pods): the owner searches would find nothing; use an empty data dir")
    missing = {i: types for i in range(clusters)
               if (types := [t for t in LOAD_ORDER if (cluster_name(i), t.resource) not in done])}
    if not missing:
        log("every cluster's objects are loaded")
        return False
    shape = Shape.of(objects // clusters)
    log(f"loading {len(missing)} clusters of {objects // clusters} objects ({shape.generate()})")
    templates = await fleet_templates(procs, shape, min(SIMS, clusters))
    store, gate, finished = Store(pool), asyncio.Semaphore(LOADERS), 0

    async def one(index: int, types: list[ResourceType]) -> None:
        nonlocal finished
        async with gate:
            name = cluster_name(index)
            made = cluster_objects(templates[index % len(templates)], index)
            await pool.execute("INSERT INTO clusters (name, mode) VALUES ($1, 'push') ON CONFLICT DO NOTHING",
                               name)
            for rtype in types:
                await ingest(store, name, iter(made[rtype.resource]), rtype)
        finished += 1
        if finished % 10 == 0 or finished == len(missing):
            log(f"loaded {finished} of {len(missing)} clusters")

    await asyncio.gather(*(one(i, types) for i, types in missing.items()))
    return True


def _round_of(checkpoint: str) -> int:
    return int(checkpoint.removeprefix("history-")) if checkpoint.startswith("history-") else 0


def _changed(obj: JSON, round_: int) -> JSON:
    """The object after change ``round_``: an annotation, and a pod's first container restarted."""
    meta = obj["metadata"]
    annotations = {**meta.get("annotations", {}), "bench.kubepedia.io/revision": str(round_)}
    copy = {**obj, "metadata": {**meta, "annotations": annotations, "resourceVersion": f"history-{round_}"}}
    statuses = obj.get("status", {}).get("containerStatuses")
    if statuses:
        first = {**statuses[0], "restartCount": statuses[0].get("restartCount", 0) + 1}
        copy["status"] = {**obj["status"], "containerStatuses": [first, *statuses[1:]]}
    return copy


_KEYS = ("SELECT namespace, name FROM resources WHERE cluster = $1 AND grp = $2 AND resource = $3"
         " ORDER BY namespace, name")
_OBJECTS = ("SELECT r.object FROM unnest($4::text[], $5::text[]) AS k(ns, n) JOIN resources r"
            " ON r.cluster = $1 AND r.grp = $2 AND r.resource = $3 AND r.namespace = k.ns AND r.name = k.n")


async def _change_round(pool: asyncpg.Pool, store: Store, *, cluster: str, rtype: ResourceType,
                        round_: int) -> int:
    keys = (await pool.fetch(_KEYS, cluster, rtype.group, rtype.resource))[::HISTORY_SHARE]
    rows = await pool.fetch(_OBJECTS, cluster, rtype.group, rtype.resource, [k["namespace"] for k in keys],
                            [k["name"] for k in keys])
    events = [{"type": "MODIFIED", "object": _changed(r["object"], round_)} for r in rows]
    await store.apply_batch(cluster=cluster, rtype=rtype, events=events, resource_version=f"history-{round_}")
    return len(events)


async def add_history(pool: asyncpg.Pool) -> bool:
    """ROUNDS rounds of changes to every tenth object of each cluster and type; a round of a
    (cluster, type) is one batch whose checkpoint says it is done. Rounds run one after the
    other over the whole fleet, so an object's changes lie a third of the day apart once
    spread. True if anything was changed."""
    store, gate, changed = Store(pool), asyncio.Semaphore(LOADERS), 0
    for round_ in range(1, ROUNDS + 1):
        todo = [key for key, checkpoint in (await loaded_types(pool)).items()
                if _round_of(checkpoint) < round_]
        if not todo:
            continue
        log(f"history round {round_}: {len(todo)} (cluster, type) batches")

        async def one(cluster: str, resource: str, round_: int = round_) -> None:
            nonlocal changed
            async with gate:
                count = await _change_round(pool, store, cluster=cluster, rtype=TYPES[resource],
                                            round_=round_)
            changed += count

        await asyncio.gather(*(one(cluster, resource) for cluster, resource in todo))
    if changed:
        log(f"{changed} changes written")
    return bool(changed)


SPREAD = """
UPDATE change_log SET at = CASE
    WHEN seq < $1 THEN now() - interval '26 hours' + (seq - $2) * (interval '2 hours' / greatest($1 - $2, 1))
    ELSE now() - interval '24 hours' + (seq - $1) * (interval '1430 minutes' / greatest($3 - $1, 1)) END
"""


async def spread_changes(pool: asyncpg.Pool) -> bool:
    """Backdate the change log so that the history rounds span the day before now (and the
    loading the two hours before that day). Changes are written within minutes, and
    ``change_log.at`` is the clock when a row was written (its default, clock_timestamp()),
    so one UPDATE moves every time, in sequence order (times must follow sequences: a time
    finds its sequence through ``change_log_at``). Done once: afterwards the log spans
    more than a day, which writing it never does."""
    row = await pool.fetchrow("SELECT min(seq) AS lo, max(seq) AS hi, max(at) - min(at) AS span"
                              " FROM change_log")
    if row["hi"] is None or row["span"] > timedelta(hours=20):
        return False
    first_change = await pool.fetchval("SELECT min(seq) FROM change_log WHERE type = 'MODIFIED'")
    if first_change is None:
        return False
    log("spreading the change log over the last day")
    await pool.execute(SPREAD, first_change, row["lo"], row["hi"])
    return True


async def prepare(pool: asyncpg.Pool, procs: Procs, *, objects: int, clusters: int) -> None:
    wrote = await load(pool, procs, objects=objects, clusters=clusters)
    wrote = await add_history(pool) or wrote
    wrote = await spread_changes(pool) or wrote
    if wrote:
        log("vacuum and analyze")  # as autovacuum leaves a table written once: index-only scans work
        await pool.execute("VACUUM (ANALYZE) resources, change_log")
