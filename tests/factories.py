"""Small, readable Kubernetes objects for tests."""

from __future__ import annotations

import uuid
from typing import Any

from kube.resources import ResourceType

PODS = ResourceType(group="", version="v1", resource="pods", kind="Pod", namespaced=True)
DEPLOYMENTS = ResourceType(group="apps", version="v1", resource="deployments", kind="Deployment",
                           namespaced=True)
SECRETS = ResourceType(group="", version="v1", resource="secrets", kind="Secret", namespaced=True)
NODES = ResourceType(group="", version="v1", resource="nodes", kind="Node", namespaced=False)


def pod(name: str, rv: int | str, *, namespace: str = "default", uid: str | None = None,
        labels: dict[str, str] | None = None, phase: str = "Running", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name, "namespace": namespace,
        "uid": uid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{name}")),
        "resourceVersion": str(rv), "creationTimestamp": "2026-01-02T03:04:05Z",
        "labels": labels or {"app": name.split("-")[0]},
    }
    meta.update(extra.pop("metadata", {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "nginx:1.27"}]},
            "status": {"phase": phase}, **extra}


def event(type_: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": type_, "object": obj}


def bookmark(rv: int | str) -> dict[str, Any]:
    return {"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                                           "metadata": {"resourceVersion": str(rv)}}}
