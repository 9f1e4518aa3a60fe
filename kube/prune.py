"""Trim what nobody queries before an object leaves the member cluster or enters the store.

``metadata.managedFields`` and the ``kubectl.kubernetes.io/last-applied-configuration``
annotation often double an object's size and answer no question kubepedia serves.
Secret payloads (``data``, ``stringData``) are dropped unless a cluster is configured to
keep them: an inventory should not become a second copy of every credential.
"""

from __future__ import annotations

from typing import Any

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SECRET_PAYLOAD = ("data", "stringData")


def prune(
    obj: dict[str, Any], *, keep_secret_data: bool = False, secret: bool | None = None
) -> dict[str, Any]:
    """Return ``obj`` without managedFields, last-applied and (for Secrets) payload.

    ``secret`` says whether ``obj`` is a Secret. The syncer always says, from the type the
    object was sent as (an object's own ``kind`` is whatever the sender wrote, and one without
    it would keep its payload); ``None`` trusts the object, which the agent may, having set
    ``kind`` and ``apiVersion`` from the type itself. The input is not modified; unchanged
    parts are shared with it.
    """
    meta = obj.get("metadata")
    pruned = dict(obj)
    if isinstance(meta, dict) and ("managedFields" in meta or _has_last_applied(meta)):
        meta = {k: v for k, v in meta.items() if k != "managedFields"}
        annotations = meta.get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
        pruned["metadata"] = meta
    if secret is None:
        secret = obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1"
    if secret and not keep_secret_data:
        for field in SECRET_PAYLOAD:
            pruned.pop(field, None)
    return pruned


def _has_last_applied(meta: dict[str, Any]) -> bool:
    annotations = meta.get("annotations")
    return isinstance(annotations, dict) and LAST_APPLIED in annotations
