"""The ``/scale`` subresource of Deployments, ReplicaSets and StatefulSets.

``kubectl scale`` PATCHes an ``autoscaling/v1`` ``Scale`` whose
``spec.replicas`` is the workload's; ``status.selector`` is the label
selector in its string form
(https://kubernetes.io/docs/reference/kubernetes-api/authorization-resources/ "Scale").
"""

from __future__ import annotations

from typing import Any

import orjson

from kube.resources import ResourceType
from kubesim import errors
from kubesim.api import Api
from kubesim.patch import apply_patch
from kubesim.store import Entry

JSON = dict[str, Any]
SCALABLE = frozenset({"deployments.apps", "replicasets.apps", "statefulsets.apps"})


def scalable(rtype: ResourceType) -> bool:
    return rtype.key in SCALABLE


def to_scale(entry: Entry) -> JSON:
    obj = orjson.loads(entry.raw)
    meta = obj["metadata"]
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in labels.items()),
        },
    }


def write_scale(
    api: Api, rtype: ResourceType, namespace: str, name: str, new_scale: Any, dry_run: bool
) -> JSON:
    """Set ``spec.replicas`` from a Scale (optimistic on its resourceVersion)."""
    current = api.get(rtype, namespace, name)
    if not isinstance(new_scale, dict) or not isinstance(new_scale.get("spec"), dict):
        raise errors.bad_request("the body of the request is not a Scale")
    wanted_rv = (new_scale.get("metadata") or {}).get("resourceVersion")
    if wanted_rv and wanted_rv != str(current.rv):
        raise errors.conflict(rtype.resource, name, rtype.group)
    replicas = new_scale["spec"].get("replicas", 0)
    if not isinstance(replicas, int) or replicas < 0:
        raise errors.invalid(
            "Scale", name, "autoscaling", [("spec.replicas", f"Invalid value: {replicas}: must be >= 0")]
        )
    patch = {"spec": {"replicas": replicas}}
    entry = api.patch(rtype, namespace, name, "application/merge-patch+json", patch, dry_run=dry_run)
    return to_scale(entry)


def patch_scale(
    api: Api,
    rtype: ResourceType,
    namespace: str,
    name: str,
    content_type: str,
    patch: Any,
    dry_run: bool,
) -> JSON:
    current = to_scale(api.get(rtype, namespace, name))
    return write_scale(
        api, rtype, namespace, name, apply_patch(content_type, current, patch, custom=False), dry_run
    )
