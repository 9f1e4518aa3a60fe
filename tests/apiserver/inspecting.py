"""A store with one problem of each kind the inspections look for, each beside a healthy object
of the same type that no check may flag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from kube.resources import ResourceType
from syncer.ingest import Store
from tests.factories import DEPLOYMENTS, NODES, PODS, event

SERVICES = ResourceType(group="", version="v1", resource="services", kind="Service", namespaced=True)
ENDPOINTS = ResourceType(group="", version="v1", resource="endpoints", kind="Endpoints", namespaced=True)
CLAIMS = ResourceType(
    group="", version="v1", resource="persistentvolumeclaims", kind="PersistentVolumeClaim", namespaced=True
)
CONFIGMAPS = ResourceType(group="", version="v1", resource="configmaps", kind="ConfigMap", namespaced=True)
REPLICASETS = ResourceType(
    group="apps", version="v1", resource="replicasets", kind="ReplicaSet", namespaced=True
)
OLD = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
NEW = datetime.now(UTC).isoformat().replace("+00:00", "Z")
LIMITED = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}
# (check, cluster, group, resource, namespace, name) of every problem made on purpose
EXPECTED = {
    ("pod-crash-looping", "east", "", "pods", "web", "crashy"),
    ("pod-crash-looping", "east", "", "pods", "web", "restarty"),
    ("pod-pending", "east", "", "pods", "web", "stuck"),
    ("deployment-unavailable", "east", "apps", "deployments", "web", "short"),
    ("node-not-ready", "east", "", "nodes", "", "node-down"),
    ("node-pressure", "east", "", "nodes", "", "node-full"),
    ("container-without-resources", "east", "apps", "deployments", "web", "short"),
    ("container-without-resources", "west", "", "pods", "payments", "bare-latest"),
    ("container-latest-image", "west", "", "pods", "payments", "bare-latest"),
    ("container-latest-image", "west", "apps", "replicasets", "payments", "orphan"),
    ("pvc-pending", "west", "", "persistentvolumeclaims", "payments", "data"),
    ("service-without-endpoints", "west", "", "services", "payments", "lonely"),
    ("object-terminating", "west", "", "configmaps", "payments", "stuck-cm"),
    ("cluster-stale", "edge", "", "", "", ""),
}


def meta(name: str, namespace: str = "", *, created: str = OLD, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "uid": f"u-{namespace}-{name}",
        "resourceVersion": "1",
        "creationTimestamp": created,
        **extra,
    }


def container(name: str = "app", image: str = "nginx:1.27", resources: Any = None) -> dict[str, Any]:
    return {"name": name, "image": image, "resources": LIMITED if resources is None else resources}


def pod(
    name: str,
    namespace: str,
    *,
    phase: str = "Running",
    statuses: Any = (),
    owned: bool = True,
    containers: Any = None,
    created: str = OLD,
    conditions: Any = (),
) -> dict[str, Any]:
    extra = (
        {
            "ownerReferences": [
                {
                    "uid": "rs-1",
                    "kind": "ReplicaSet",
                    "name": "rs",
                    "controller": True,
                    "apiVersion": "apps/v1",
                }
            ]
        }
        if owned
        else {}
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(name, namespace, created=created, **extra),
        "spec": {"containers": containers or [container()]},
        "status": {"phase": phase, "containerStatuses": list(statuses), "conditions": list(conditions)},
    }


def status(restarts: int = 0, waiting: str | None = None) -> dict[str, Any]:
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {"startedAt": OLD}}
    return {"name": "app", "restartCount": restarts, "ready": waiting is None, "state": state}


def deployment(
    name: str, namespace: str, *, available: int, replicas: int = 3, containers: Any = None
) -> dict[str, Any]:
    st: dict[str, Any] = {"replicas": replicas, "readyReplicas": available}
    if available:
        st["availableReplicas"] = available
    if available < replicas:
        st["unavailableReplicas"] = replicas - available
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, namespace),
        "spec": {"replicas": replicas, "template": {"spec": {"containers": containers or [container()]}}},
        "status": st,
    }


def node(name: str, **conditions: str) -> dict[str, Any]:
    statuses = {"Ready": "True", "MemoryPressure": "False", "DiskPressure": "False", **conditions}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta(name),
        "status": {"conditions": [{"type": t, "status": s, "reason": "Test"} for t, s in statuses.items()]},
    }


def service(name: str, namespace: str, selector: dict[str, str] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "ClusterIP", "ports": [{"port": 80}]}
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(name, namespace), "spec": spec}


def endpoints(name: str, namespace: str, ready: int, not_ready: int = 0) -> dict[str, Any]:
    subset: dict[str, Any] = {"ports": [{"port": 8080}]}
    if ready:
        subset["addresses"] = [{"ip": f"10.0.0.{i}"} for i in range(ready)]
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": f"10.0.1.{i}"} for i in range(not_ready)]
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": meta(name, namespace),
        "subsets": [subset] if ready or not_ready else [],
    }


def claim(name: str, namespace: str, phase: str, created: str = OLD) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta(name, namespace, created=created),
        "spec": {"storageClassName": "fast"},
        "status": {"phase": phase},
    }


def configmap(name: str, namespace: str, *, deleted: str | None) -> dict[str, Any]:
    extra: dict[str, Any] = {"finalizers": ["example.com/hold"]}
    if deleted:
        extra["deletionTimestamp"] = deleted
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name, namespace, **extra)}


def replicaset(name: str, namespace: str, image: str, *, owned: bool) -> dict[str, Any]:
    extra: dict[str, Any] = (
        {
            "ownerReferences": [
                {"uid": "d-1", "kind": "Deployment", "name": "d", "controller": True, "apiVersion": "apps/v1"}
            ]
        }
        if owned
        else {}
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": meta(name, namespace, **extra),
        "spec": {"replicas": 1, "template": {"spec": {"containers": [container(image=image)]}}},
    }


EAST: list[tuple[ResourceType, list[dict[str, Any]]]] = [
    (
        PODS,
        [
            pod("crashy", "web", statuses=[status(3, "CrashLoopBackOff")]),
            pod("restarty", "web", statuses=[status(12)]),
            pod("steady", "web", statuses=[status(2)]),
            pod(
                "stuck",
                "web",
                phase="Pending",
                conditions=[
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/3 nodes are available",
                    }
                ],
            ),
            pod("starting", "web", phase="Pending", created=NEW),
        ],
    ),
    (
        DEPLOYMENTS,
        [
            deployment("short", "web", available=1, containers=[container(resources={})]),
            deployment("fine", "web", available=3),
        ],
    ),
    (NODES, [node("node-down", Ready="False"), node("node-full", MemoryPressure="True"), node("node-ok")]),
]
WEST: list[tuple[ResourceType, list[dict[str, Any]]]] = [
    (
        PODS,
        [
            pod(
                "bare-latest",
                "payments",
                owned=False,
                containers=[container(image="busybox", resources={"requests": {"cpu": "1"}})],
            ),
            pod("bare-pinned", "payments", owned=False, containers=[container(image="nginx@sha256:abcd")]),
            pod("owned-latest", "payments", containers=[container(image="nginx:latest", resources={})]),
        ],
    ),
    (
        REPLICASETS,
        [
            replicaset("orphan", "payments", "registry:5000/app:latest", owned=False),
            replicaset("child", "payments", "registry:5000/app:latest", owned=True),
            replicaset("tagged", "payments", "registry:5000/app:2", owned=False),
        ],
    ),
    (
        CLAIMS,
        [
            claim("data", "payments", "Pending"),
            claim("bound", "payments", "Bound"),
            claim("fresh", "payments", "Pending", created=NEW),
        ],
    ),
    (
        SERVICES,
        [
            service("lonely", "payments", {"app": "lonely"}),
            service("served", "payments", {"app": "x"}),
            service("manual", "payments", None),
        ],
    ),
    (
        ENDPOINTS,
        [
            endpoints("lonely", "payments", 0, not_ready=2),
            endpoints("served", "payments", 2),
            endpoints("manual", "payments", 0),
        ],
    ),
    (
        CONFIGMAPS,
        [
            configmap("stuck-cm", "payments", deleted=OLD),
            configmap("going", "payments", deleted=NEW),
            configmap("kept", "payments", deleted=None),
        ],
    ),
]


async def fill_problems(pool: asyncpg.Pool) -> None:
    """east and west (pull, healthy) with the objects above; edge, a push cluster whose agent
    has been silent for an hour."""
    store = Store(pool)
    await pool.execute(
        "INSERT INTO clusters (name, mode, healthy) VALUES ('east', 'pull', true),"
        " ('west', 'pull', true), ('edge', 'push', NULL)"
    )
    await pool.execute("UPDATE clusters SET last_seen_at = now() - interval '1 hour' WHERE name = 'edge'")
    await pool.execute("UPDATE clusters SET last_seen_at = now() WHERE name <> 'edge'")
    for cluster, synced in (("east", EAST), ("west", WEST)):
        for rtype, objects in synced:
            await store.apply_batch(cluster=cluster, rtype=rtype, events=[event("ADDED", o) for o in objects])
