"""The catalog: which resource types the read API serves, from what the clusters sync.

The union of every cluster's synced types (``sync_state``), with what discovery needs
to describe them, and which of them each cluster serves (``Catalog.of_cluster`` is what
``/clusters/{name}/...`` offers). A group/resource that clusters serve in different
versions is offered in each of those versions, and a list at a version returns only the
objects stored in it: an object never claims an apiVersion it was not stored in. The
preferred version of a group is the one most of its types' objects are stored in (ties:
the newest name).

Reading the catalog is a few small queries; it is cached for a few seconds, so discovery
and every request's type lookup cost nothing on the hot path.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from kube.resources import PrinterColumn, ResourceType

CACHE_SECONDS = 2.0
_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes' version order: GA > beta > alpha, then by number (v2 > v1 > v1beta2)."""
    match = _VERSION.match(version)
    if not match:
        return (-1, 0, 0)
    major, level, minor = match.groups()
    return ({None: 2, "beta": 1, "alpha": 0}[level], int(major), int(minor or 0))


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterState:
    """A member cluster as readers need to know it: is its data current?"""

    name: str
    stale: bool
    age_seconds: float | None  # since the syncer last heard from the cluster
    message: str | None

    def warning(self) -> str:
        age = f"data {_human(self.age_seconds)} old" if self.age_seconds is not None else "no data yet"
        return f"cluster {self.name}: {age}: {self.message or 'unhealthy'}"


def _human(seconds: float) -> str:
    minutes, hours = int(seconds // 60), int(seconds // 3600)
    if seconds < 120:
        return f"{int(seconds)}s"
    return f"{minutes}m" if hours < 2 else f"{hours}h"


GVR = tuple[str, str, str]  # (group, version, resource)


@dataclass(frozen=True, slots=True)
class Catalog:
    """The served types (each group/version/resource once), and how many objects each holds."""

    types: tuple[ResourceType, ...] = ()
    clusters: dict[str, ClusterState] = field(default_factory=dict)
    # A custom resource's additionalPrinterColumns, from the synced CRD objects.
    printer_columns: dict[tuple[str, str, str], tuple[PrinterColumn, ...]] = field(default_factory=dict)
    # What each cluster serves: its types and the objects it holds of each.
    served: dict[str, dict[GVR, int]] = field(default_factory=dict)
    _by_path: dict[GVR, ResourceType] = field(default_factory=dict, repr=False)
    _objects: dict[GVR, int] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, types: Iterable[tuple[ResourceType, int]], clusters: Iterable[ClusterState] = (),
           printer_columns: dict[tuple[str, str, str], tuple[PrinterColumn, ...]] | None = None,
           served: dict[str, dict[GVR, int]] | None = None) -> Catalog:
        """``types``: each served type with the number of objects stored in it."""
        ordered = sorted(types, key=lambda t: (t[0].group, t[0].version, t[0].resource))
        return cls(tuple(t for t, _ in ordered), {c.name: c for c in clusters}, printer_columns or {},
                   served or {}, {(t.group, t.version, t.resource): t for t, _ in ordered},
                   {(t.group, t.version, t.resource): n for t, n in ordered})

    def of_cluster(self, name: str) -> Catalog:
        """What one cluster serves, as discovery under ``/clusters/{name}`` describes it: its
        types only, and each group's preferred version by its own objects."""
        own = self.served.get(name, {})
        types = ((t, own[(t.group, t.version, t.resource)]) for t in self.types
                 if (t.group, t.version, t.resource) in own)
        state = [self.clusters[name]] if name in self.clusters else []
        return Catalog.of(types, state, self.printer_columns, {name: own})

    def columns_of(self, t: ResourceType) -> tuple[PrinterColumn, ...]:
        return self.printer_columns.get((t.group, t.resource, t.version), ())

    def warnings(self, cluster: str | None, *, among: frozenset[str] | None = None) -> list[str]:
        """One line per stale cluster among those a request reads: ``cluster``, or every
        cluster (of ``among``, the clusters the request and its caller's scope allow)."""
        chosen = [self.clusters[cluster]] if cluster in self.clusters else (
            [] if cluster is not None else
            [c for name, c in self.clusters.items() if among is None or name in among])
        return [c.warning() for c in chosen if c.stale]

    def find(self, group: str, version: str, resource: str) -> ResourceType | None:
        return self._by_path.get((group, version, resource))

    def groups(self) -> dict[str, list[str]]:
        """Each group's versions, preferred first."""
        weight: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for t in self.types:
            weight[t.group][t.version] += self._objects.get((t.group, t.version, t.resource), 0) + 1
        return {
            group: sorted(versions, key=lambda v: (versions[v], version_priority(v)), reverse=True)
            for group, versions in sorted(weight.items())
        }

    def in_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self.types if t.group == group and t.version == version]


# One row per served group/version/resource: what the clusters' discovery says of it.
_NAMES = """(SELECT coalesce(array_agg(DISTINCT n ORDER BY n), '{{}}') FROM sync_state t, unnest(t.{0}) n
     WHERE t.grp = s.grp AND t.version = s.version AND t.resource = s.resource)"""
_QUERY = f"""
SELECT s.grp, s.version, s.resource, max(s.kind) AS kind, bool_or(s.namespaced) AS namespaced,
       sum(s.object_count)::bigint AS objects, max(s.singular) AS singular,
       {_NAMES.format("short_names")} AS short_names, {_NAMES.format("categories")} AS categories
FROM sync_state s GROUP BY s.grp, s.version, s.resource
"""


# A push cluster is stale when its agent has been silent for this long (as the registry says).
_CLUSTERS = """
SELECT name, healthy, health_message,
       extract(epoch FROM now() - last_seen_at)::float8 AS age,
       mode = 'push' AND last_seen_at < now() - make_interval(secs => $1) AS silent
FROM clusters WHERE removing_at IS NULL
"""


_SERVED = "SELECT cluster, grp, version, resource, object_count FROM sync_state"


_CRDS = """
SELECT DISTINCT ON (object #>> '{spec,group}', object #>> '{spec,names,plural}') object -> 'spec' AS spec
FROM resources WHERE grp = 'apiextensions.k8s.io' AND resource = 'customresourcedefinitions'
"""


def _printer_columns(spec: Any) -> dict[tuple[str, str, str], tuple[PrinterColumn, ...]]:
    """A CRD spec's printer columns per version; anything malformed is left out."""
    out: dict[tuple[str, str, str], tuple[PrinterColumn, ...]] = {}
    if not isinstance(spec, dict):
        return out
    group, plural = spec.get("group"), (spec.get("names") or {}).get("plural")
    for version in spec.get("versions") or []:
        columns = version.get("additionalPrinterColumns") if isinstance(version, dict) else None
        if not isinstance(group, str) or not isinstance(plural, str) or not isinstance(columns, list):
            continue
        out[(group, plural, str(version.get("name")))] = tuple(
            (str(c.get("name")), str(c.get("type", "string")), str(c.get("jsonPath", "")),
             int(c.get("priority") or 0))
            for c in columns if isinstance(c, dict) and c.get("name") and c.get("jsonPath"))
    return out


async def load(pool: asyncpg.Pool, *, push_silence_s: float) -> Catalog:
    rows = await pool.fetch(_QUERY)
    clusters = await pool.fetch(_CLUSTERS, push_silence_s)
    columns: dict[tuple[str, str, str], tuple[PrinterColumn, ...]] = {}
    for crd in await pool.fetch(_CRDS):
        columns.update(_printer_columns(crd["spec"]))
    served: dict[str, dict[GVR, int]] = defaultdict(dict)
    for row in await pool.fetch(_SERVED):
        served[row["cluster"]][(row["grp"], row["version"], row["resource"])] = row["object_count"]
    return Catalog.of(
        ((ResourceType(group=r["grp"], version=r["version"], resource=r["resource"], kind=r["kind"],
                       namespaced=r["namespaced"], singular=r["singular"],
                       short_names=tuple(r["short_names"]), categories=tuple(r["categories"])), r["objects"])
         for r in rows),
        (ClusterState(name=c["name"], stale=c["healthy"] is False or bool(c["silent"]),
                      age_seconds=c["age"],
                      message=c["health_message"] or ("no word from the agent" if c["silent"] else None))
         for c in clusters),
        columns, dict(served))


class CatalogCache:
    """The catalog, re-read at most every ``CACHE_SECONDS``; one reader at a time."""

    def __init__(self, pool: asyncpg.Pool, *, push_silence_s: float, ttl: float = CACHE_SECONDS) -> None:
        self._pool = pool
        self._push_silence_s = push_silence_s
        self._ttl = ttl
        self._catalog = Catalog()
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self) -> Catalog:
        if time.monotonic() - self._loaded_at < self._ttl:
            return self._catalog
        async with self._lock:
            if time.monotonic() - self._loaded_at >= self._ttl:
                self._catalog = await load(self._pool, push_silence_s=self._push_silence_s)
                self._loaded_at = time.monotonic()
        return self._catalog
