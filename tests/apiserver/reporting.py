"""Objects for the report tests, and what each report must say of them, computed in plain
Python (independently of the SQL: its own quantity and time parsers)."""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

import asyncpg

from kube.resources import ResourceType
from kubesim import objects
from syncer.ingest import Store
from tests.factories import NODES, PODS

JSON = dict[str, Any]
EVENTS = ResourceType(group="", version="v1", resource="events", kind="Event", namespaced=True)
CLUSTERS = ("east", "west", "edge")
NAMESPACES = ("default", "payments", "web")
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
LONG_IMAGE = "registry.example.com/" + "x" * 120 + ":1"  # 24 containers of it pass 2000 bytes
BUSYBOX = "docker.io/library/busybox:1.36"
HOSTILE = "=HYPERLINK(\"http://evil.example\")"


@dataclass
class Synced:
    """Everything written to the store, per cluster and type."""

    objects: dict[str, dict[str, list[JSON]]] = field(default_factory=lambda: defaultdict(dict))

    def of(self, resource: str) -> Iterable[tuple[str, JSON]]:
        for cluster, by_type in self.objects.items():
            for obj in by_type.get(resource, []):
                yield cluster, obj


def _meta(obj: JSON, cluster: str, n: int, stamp: str = "2026-01-02T03:04:05Z") -> JSON:
    obj["metadata"].update(uid=f"{cluster}-{obj['kind']}-{n}", resourceVersion=str(n + 1),
                           creationTimestamp=stamp)
    return obj


def _pods(rng: random.Random, cluster: str) -> list[JSON]:
    pods = []
    for n in range(45):
        pod = objects.make_pod(rng, NAMESPACES[n % 3], f"pod-{n}", node=f"{cluster}-node-{n % 3}")
        if n % 4 == 0:  # init and ephemeral containers, an init container that restarted
            pod["spec"]["initContainers"] = [{"name": "init", "image": BUSYBOX}]
            pod["status"]["initContainerStatuses"] = [{"name": "init", "restartCount": n % 3}]
        if n % 9 == 0:
            pod["spec"]["ephemeralContainers"] = [{"name": "debug", "image": BUSYBOX}]
        pod["status"]["phase"] = [*PHASES, "Running", "Running"][n % 7]
        if n == 5:
            del pod["status"]["phase"]
        if n == 6:
            pod["status"]["phase"] = "Evicted"  # no such phase: counted as other
        pods.append(_meta(pod, cluster, n))
    odd = objects.make_pod(rng, "web", "odd", node=f"{cluster}-node-0")
    odd["spec"]["containers"] = {"name": "c", "image": "docker.io/library/odd:1"}  # not a list
    odd["status"]["containerStatuses"] = [{"name": "c", "restartCount": "7"}, {"restartCount": 2.5}]
    wide = objects.make_pod(rng, "payments", "wide", node=f"{cluster}-node-1")
    wide["spec"]["containers"] = [{"name": f"c{i}", "image": LONG_IMAGE} for i in range(24)]
    hostile = objects.make_pod(rng, "default", "hostile", node=f"{cluster}-node-1")
    hostile["spec"]["containers"][0]["image"] = "-cmd|' /C calc'!A0"
    return [*pods, _meta(odd, cluster, 100), _meta(wide, cluster, 101), _meta(hostile, cluster, 102)]


NODE_QUANTITIES = (("4", "16101600Ki", "110"), ("3920m", "15Gi", "110"), ("2500m", "1.5e9", "0.1k"),
                   ("lots", "1E", "55"))


def _nodes(rng: random.Random, cluster: str) -> list[JSON]:
    nodes = []
    for n, (cpu, memory, pods) in enumerate(NODE_QUANTITIES[: 2 + CLUSTERS.index(cluster)]):
        node = objects.make_node(rng, f"{cluster}-node-{n}")
        node["status"]["capacity"] = {"cpu": cpu, "memory": memory, "pods": pods}
        node["status"]["allocatable"] = {"cpu": "1500m", "memory": "1Mi", "pods": pods}
        nodes.append(_meta(node, cluster, 200 + n))
    return nodes


def _events(rng: random.Random, cluster: str) -> list[JSON]:
    events = []
    for n in range(40):
        involved = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": f"pod-{n}", "uid": ""}}
        event = objects.make_event(rng, NAMESPACES[n % 3], f"ev-{n}", involved)
        event["lastTimestamp"] = f"2026-01-{1 + n % 10:02d}T{n % 24:02d}:30:00Z"
        event["count"] = 1 + n % 4
        if n % 10 == 3:  # a new-style event: no lastTimestamp, a series
            event["lastTimestamp"] = None
            event["eventTime"] = "2026-01-02T00:00:00.000000Z"
            event["series"] = {"count": 9, "lastObservedTime": f"2026-01-0{1 + n % 9}T12:00:00.500000Z"}
        events.append(_meta(event, cluster, 300 + n))
    involved = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}}
    bad = objects.make_event(rng, "web", "bad-time", involved)
    bad["lastTimestamp"] = "2026-02-30T00:00:00Z"  # not a date: must not stop the sync
    bad["count"] = "many"
    hostile = objects.make_event(rng, "default", "hostile", involved)
    hostile["reason"] = HOSTILE
    hostile["lastTimestamp"] = "2026-01-05T00:00:00Z"
    return [*events, _meta(bad, cluster, 400), _meta(hostile, cluster, 401)]


async def fill_reports(pool: asyncpg.Pool, *, seed: int = 7) -> Synced:
    """Three push clusters with pods, nodes and events, synced through the ingest core."""
    store = Store(pool)
    synced = Synced()
    rng = random.Random(seed)
    for cluster in CLUSTERS:
        await pool.execute("INSERT INTO clusters (name, mode) VALUES ($1, 'push')", cluster)
        for rtype, items in ((PODS, _pods(rng, cluster)), (NODES, _nodes(rng, cluster)),
                             (EVENTS, _events(rng, cluster))):
            async with store.snapshot(cluster=cluster, rtype=rtype) as snap:
                await snap.add(items)
                await snap.end("1000")
            synced.objects[cluster][rtype.resource] = items
    return synced


# -- what the reports must say ------------------------------------------------------------------

def _in(cluster: str, namespace: str | None, clusters: set[str] | None, namespaces: set[str] | None) -> bool:
    return ((clusters is None or cluster in clusters)
            and (namespaces is None or namespace is None or namespace in namespaces))


def expected_counts(synced: Synced, clusters: set[str] | None = None,
                    namespaces: set[str] | None = None) -> list[JSON]:
    kinds = {"pods": "Pod", "nodes": "Node", "events": "Event"}
    counted: Counter[tuple[str, str, str]] = Counter()
    for cluster, by_type in synced.objects.items():
        for resource, items in by_type.items():
            for obj in items:
                ns = obj["metadata"].get("namespace", "")
                if _in(cluster, ns, clusters, namespaces):  # "" (cluster-scoped) is in no namespace list
                    counted[(cluster, resource, ns)] += 1
    return [{"cluster": c, "group": "", "resource": r, "kind": kinds[r], "namespace": ns, "objects": n}
            for (c, r, ns), n in sorted(counted.items())]


def _number(value: Any) -> Decimal | None:
    return Decimal(str(value)) if isinstance(value, int | float) and not isinstance(value, bool) else None


def pod_restarts(pod: JSON) -> int:
    total = Decimal(0)
    for key in ("containerStatuses", "initContainerStatuses"):
        statuses = pod.get("status", {}).get(key)
        for status in statuses if isinstance(statuses, list) else []:
            number = _number(status.get("restartCount")) if isinstance(status, dict) else None
            if number is not None:
                total += max(int(number), 0)
    return int(total)


def expected_pods(synced: Synced, clusters: set[str] | None = None,
                  namespaces: set[str] | None = None) -> list[JSON]:
    rows: dict[str, JSON] = {}
    for cluster, pod in synced.of("pods"):
        if not _in(cluster, pod["metadata"]["namespace"], clusters, namespaces):
            continue
        row = rows.setdefault(cluster, {"cluster": cluster, "pods": 0, **{p.lower(): 0 for p in PHASES},
                                        "other": 0, "restarts": 0})
        phase = pod["status"].get("phase")
        row["pods"] += 1
        row[phase.lower() if phase in PHASES else "other"] += 1
        row["restarts"] += pod_restarts(pod)
    return [rows[c] for c in sorted(rows)]


def pod_images(pod: JSON) -> list[str]:
    images = []
    for key in ("containers", "initContainers", "ephemeralContainers"):
        containers = pod["spec"].get(key)
        for container in containers if isinstance(containers, list) else []:
            if isinstance(container, dict) and isinstance(container.get("image"), str):
                images.append(container["image"])
    return images


def expected_images(synced: Synced, clusters: set[str] | None = None,
                    namespaces: set[str] | None = None) -> list[JSON]:
    pods: Counter[tuple[str, str, str]] = Counter()
    containers: Counter[tuple[str, str, str]] = Counter()
    for cluster, pod in synced.of("pods"):
        ns = pod["metadata"]["namespace"]
        if not _in(cluster, ns, clusters, namespaces):
            continue
        images = pod_images(pod)
        for image in set(images):
            pods[(image, cluster, ns)] += 1
        for image in images:
            containers[(image, cluster, ns)] += 1
    return [{"image": i, "cluster": c, "namespace": ns, "pods": pods[(i, c, ns)], "containers": n}
            for (i, c, ns), n in sorted(containers.items(), key=lambda kv: (kv[0][0].encode(), kv[0][1:]))]


_QUANTITY = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d\d?)?",
                       re.ASCII)
_DECIMAL_SI = (("n", -9), ("u", -6), ("m", -3), ("", 0), ("k", 3), ("M", 6), ("G", 9), ("T", 12), ("P", 15),
               ("E", 18))
_SUFFIX = {**{s: Decimal(10) ** e for s, e in _DECIMAL_SI},
           **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))}}


def quantity(text: str) -> Decimal | None:
    """A Kubernetes quantity in base units, by the API's grammar; None if it is not one."""
    match = _QUANTITY.fullmatch(text)
    if not match or len(text) > 64:
        return None
    number, suffix = Decimal(match[1]), match[2] or ""
    if suffix not in _SUFFIX:  # an exponent: e3, E-2
        return number * Decimal(10) ** int(suffix[1:])
    return number * _SUFFIX[suffix]


def expected_nodes(synced: Synced, clusters: set[str] | None = None) -> list[JSON]:
    rows = []
    for cluster in sorted(synced.objects):
        nodes = synced.objects[cluster].get("nodes", [])
        if not _in(cluster, None, clusters, None) or not nodes:
            continue
        row: JSON = {"cluster": cluster, "nodes": len(nodes)}
        for part in ("capacity", "allocatable"):
            for resource, scale, label in (("cpu", 1000, "CpuMillis"), ("memory", 1, "MemoryBytes"),
                                           ("pods", 1, "Pods")):
                values = [quantity(n["status"][part][resource]) for n in nodes]
                row[part + label] = sum(int((v * scale).to_integral_value(ROUND_CEILING))
                                        for v in values if v is not None)
        rows.append(row)
    return rows


def event_time(event: JSON) -> datetime | None:
    series = event.get("series") or {}
    for value in (series.get("lastObservedTime"), event.get("lastTimestamp"), event.get("eventTime"),
                  event.get("firstTimestamp"), event["metadata"].get("creationTimestamp")):
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
            except ValueError:
                continue
    return None


def event_count(event: JSON) -> int:
    for value in ((event.get("series") or {}).get("count"), event.get("count")):
        number = _number(value)
        if number is not None:
            return max(int(number), 1)
    return 1


def expected_events(synced: Synced, *, since: datetime | None = None, before: datetime | None = None,
                    clusters: set[str] | None = None, namespaces: set[str] | None = None) -> list[JSON]:
    events: Counter[tuple[str, str, str]] = Counter()
    occurrences: Counter[tuple[str, str, str]] = Counter()
    for cluster, event in synced.of("events"):
        at = event_time(event)
        if at is None or not _in(cluster, event["metadata"]["namespace"], clusters, namespaces):
            continue
        if (since is not None and at < since) or (before is not None and at >= before):
            continue
        key = (cluster, event.get("type") or "", event.get("reason") or "")
        events[key] += 1
        occurrences[key] += event_count(event)
    return [{"cluster": c, "type": t, "reason": r, "events": n, "occurrences": occurrences[(c, t, r)]}
            for (c, t, r), n in sorted(events.items(), key=lambda kv: tuple(s.encode() for s in kv[0]))]
