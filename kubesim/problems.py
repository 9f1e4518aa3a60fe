"""Problems on purpose, for ``--generate problems=1`` (the demo's clusters): one object of each
kind an inspection looks for, so that a fresh cluster has something to find.

Made through the API as controllers would leave them (status included), then, for those whose
problem is being so for a while (a pod or claim pending), written again with a creation time
in the past, without history, as :mod:`kubesim.generate` writes everything.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from kube.resources import ResourceType, type_key
from kubesim.api import Api

JSON = dict[str, Any]
BACKDATE = timedelta(minutes=20)
LIMITED = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}


def _rtype(api: Api, group: str, plural: str) -> ResourceType:
    rtype = api.registry.by_key(type_key(group, plural))
    assert rtype is not None
    return rtype


def _create(api: Api, group: str, plural: str, obj: JSON, *, backdate: bool = False) -> None:
    rtype = _rtype(api, group, plural)
    entry = api.create(rtype, obj["metadata"].get("namespace", ""), obj, record=False)
    if backdate:
        aged = orjson.loads(entry.raw)
        aged["metadata"]["creationTimestamp"] = _ago(BACKDATE)
        api.store.write(api.tstore(rtype), aged, record=False)


def _ago(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod(name: str, namespace: str, containers: list[JSON], status: JSON) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"containers": containers},
        "status": status,
    }


def _crash_looping(namespace: str) -> JSON:
    waiting = {
        "name": "app",
        "image": "ghcr.io/example/api-server:2.14.3",
        "ready": False,
        "restartCount": 7,
        "state": {
            "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}
        },
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
    }
    return _pod(
        "crash-looper",
        namespace,
        [{"name": "app", "image": "ghcr.io/example/api-server:2.14.3", "resources": LIMITED}],
        {"phase": "Running", "containerStatuses": [waiting]},
    )


def _pending(namespace: str) -> JSON:
    scheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/4 nodes are available: 4 Insufficient memory.",
    }
    return _pod(
        "unschedulable",
        namespace,
        [
            {
                "name": "app",
                "image": "docker.io/library/postgres:16.3",
                "resources": {"requests": {"memory": "512Gi"}, "limits": {"memory": "512Gi"}},
            }
        ],
        {"phase": "Pending", "conditions": [scheduled]},
    )


def _latest(namespace: str) -> JSON:
    running = {
        "name": "debug",
        "image": "nginx:latest",
        "ready": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": _ago(timedelta(hours=2))}},
    }
    return _pod(
        "debug-shell",
        namespace,
        [{"name": "debug", "image": "nginx:latest"}],
        {"phase": "Running", "containerStatuses": [running]},
    )


def _understaffed(namespace: str) -> JSON:
    template = {
        "metadata": {"labels": {"app": "understaffed"}},
        "spec": {
            "containers": [
                {"name": "app", "image": "ghcr.io/example/api-server:2.14.3", "resources": LIMITED}
            ]
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "understaffed", "namespace": namespace, "labels": {"app": "understaffed"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "understaffed"}}, "template": template},
        "status": {
            "replicas": 3,
            "readyReplicas": 1,
            "availableReplicas": 1,
            "unavailableReplicas": 2,
            "updatedReplicas": 3,
        },
    }


def _not_ready_node() -> JSON:
    conditions = [
        {
            "type": "Ready",
            "status": "Unknown",
            "reason": "NodeStatusUnknown",
            "message": "Kubelet stopped posting node status.",
        },
        {"type": "DiskPressure", "status": "True", "reason": "KubeletHasDiskPressure"},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "node-lost", "labels": {}},
        "spec": {},
        "status": {"conditions": conditions},
    }


def populate_problems(api: Api, namespace: str) -> None:
    """One problem of each kind in ``namespace`` (and one node)."""
    _create(api, "", "pods", _crash_looping(namespace))
    _create(api, "", "pods", _pending(namespace), backdate=True)
    _create(api, "", "pods", _latest(namespace))
    _create(api, "apps", "deployments", _understaffed(namespace))
    _create(api, "", "nodes", _not_ready_node())
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-pending", "namespace": namespace},
        "spec": {
            "storageClassName": "missing",
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "10Gi"}},
        },
        "status": {"phase": "Pending"},
    }
    _create(api, "", "persistentvolumeclaims", claim, backdate=True)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "orphan", "namespace": namespace},
        "spec": {"type": "ClusterIP", "selector": {"app": "nobody"}, "ports": [{"port": 80}]},
    }
    _create(api, "", "services", service)
    _create(
        api,
        "",
        "endpoints",
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "orphan", "namespace": namespace},
            "subsets": [],
        },
    )
