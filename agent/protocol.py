"""The agent -> syncer ingest protocol (version 1), shared by both ends.

Base URL: the syncer's ingest listener, e.g. ``https://syncer:8443``. Every request
carries ``Authorization: Bearer <cluster token>``. Request bodies are JSON (orjson),
gzip-compressed with ``Content-Encoding: gzip`` when larger than :data:`GZIP_MIN`
bytes; every response body is JSON.

=====  =============================================================  ================================
verb   path (under ``/ingest/v1/clusters/{cluster}``)                  request -> response
=====  =============================================================  ================================
GET    ``/checkpoints``                                                 -> ``{"checkpoints": {key: rv}}``
POST   ``/snapshots``                                                   ``{"type"}`` -> ``{"snapshot": id}``
POST   ``/snapshots/{id}/pages``                                        ``{"type", "items",
                                                                        "omitted"?}`` -> ``{"accepted":
                                                                        n, "skipped": n}``
POST   ``/snapshots/{id}/end``                                          ``{"type", "resourceVersion",
                                                                        "count"}`` -> ``{"deleted": n,
                                                                        "checkpoint": rv}``
POST   ``/changes``                                                     ``{"type", "events":
                                                                        [{"type", "object" or
                                                                        "omitted"}],
                                                                        "resourceVersion",
                                                                        "after"?}``
                                                                        -> ``{"applied": n,
                                                                        "skipped": n,
                                                                        "checkpoint": rv}``
POST   ``/types/remove``                                                ``{"type"}`` -> ``{"deleted": n}``
=====  =============================================================  ================================

``type`` is a ResourceType as ``{"group", "version", "resource", "kind", "namespaced"}``
(:func:`type_to_dict`); the checkpoint keys are ``ResourceType.key``
(``"deployments.apps"``, ``"pods"``). ``resourceVersion`` is opaque: a plain Kubernetes
resourceVersion, or a composite ``{"namespaces": {...}}`` string for namespace-scoped
agents; the syncer stores and returns it verbatim. A ``changes`` call with no events is
a bookmark: it only moves the checkpoint. ``after`` (optional) is the checkpoint the
batch follows: a batch whose ``after`` is not the committed checkpoint (it is older than
what is stored) is refused with 409 ``CheckpointMismatch``, unless it is a replay of the
committed batch (its ``resourceVersion`` is the committed one). A new snapshot of a type abandons any
unfinished earlier snapshot of the same type.

Limits: a request body is at most :data:`MAX_BODY_BYTES` after decompression and
:data:`MAX_ITEMS` objects; the agent splits pages and batches so that its bodies always fit
(:mod:`agent.push`). An object whose JSON is over :data:`MAX_OBJECT_BYTES` is not sent: the
agent sends its identity instead (``"omitted"``: a list beside a page's ``items``, or an
event's ``"omitted"`` in place of its ``"object"``), so the syncer can report it and a
snapshot's count still adds up.

One object the syncer cannot store (a name Kubernetes would not allow, a missing uid, the
wrong kind, over the size limit, ...) does not refuse the request: it is skipped, the rest is
applied, and the answer counts it (``"skipped": n``); the type's last error names it.

Errors are Kubernetes ``Status`` objects (``{"kind": "Status", "code", "reason",
"message"}``): 400 a malformed request (not JSON, not a list, an unknown event type, a page
naming an object twice); 401 for any authentication failure (no token, a wrong token, an
unknown cluster: the answer does not say which); 403 ``exceeded quota`` (types or objects
per cluster); 404 the cluster was removed while writing; 408 a body that did not arrive in
time; 409 with ``reason: "SnapshotLost"`` when the snapshot id is unknown (restart the
snapshot) or ``"CheckpointMismatch"``; 413 a body or item count over the limits; 429/503
with a ``Retry-After`` header (seconds) for backpressure.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from agent.events import KubeObject, WatchEvent
from kube.changes import CHANGE_TYPES, ChangeType
from kube.resources import ResourceType

PREFIX = "/ingest/v1/clusters"
GZIP_MIN = 1024
# An object as stored is at most 3 MiB of JSON: twice etcd's 1.5 MiB request limit, for JSON
# that is larger than the protobuf the apiserver stores. A body holds at least one such object.
MAX_OBJECT_BYTES = 3 * 1024 * 1024
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_ITEMS = 1000  # objects (events) per request; the agent sends pages and batches of 500
MAX_CHECKPOINT_BYTES = 64 * 1024  # a composite checkpoint names every watched namespace
MAX_GROUP = 253  # an API group is a DNS subdomain; version, resource and kind are DNS labels
MAX_LABEL = 63
SNAPSHOT_LOST = "SnapshotLost"
CHECKPOINT_MISMATCH = "CheckpointMismatch"


class ProtocolError(ValueError):
    """A body that does not follow this protocol (the server answers 400)."""


def cluster_path(cluster: str, *parts: str) -> str:
    segments = [PREFIX, quote(cluster, safe=""), *(quote(p, safe="") for p in parts)]
    return "/".join(segments)


def checkpoints_path(cluster: str) -> str:
    return cluster_path(cluster, "checkpoints")


def snapshots_path(cluster: str) -> str:
    return cluster_path(cluster, "snapshots")


def snapshot_pages_path(cluster: str, snapshot_id: str) -> str:
    return cluster_path(cluster, "snapshots", snapshot_id, "pages")


def snapshot_end_path(cluster: str, snapshot_id: str) -> str:
    return cluster_path(cluster, "snapshots", snapshot_id, "end")


def changes_path(cluster: str) -> str:
    return cluster_path(cluster, "changes")


def remove_type_path(cluster: str) -> str:
    return cluster_path(cluster, "types", "remove")


def type_to_dict(rtype: ResourceType) -> dict[str, Any]:
    return {
        "group": rtype.group,
        "version": rtype.version,
        "resource": rtype.resource,
        "kind": rtype.kind,
        "namespaced": rtype.namespaced,
        "singularName": rtype.singular,
        "shortNames": list(rtype.short_names),
        "categories": list(rtype.categories),
    }


def type_from_dict(data: Any) -> ResourceType:
    if not isinstance(data, dict):
        raise ProtocolError("type must be an object")
    try:
        fields = {k: data[k] for k in ("group", "version", "resource", "kind")}
        namespaced = data["namespaced"]
    except KeyError as exc:
        raise ProtocolError(f"type lacks {exc.args[0]!r}") from exc
    if not all(isinstance(v, str) for v in fields.values()) or not isinstance(namespaced, bool):
        raise ProtocolError("type fields must be strings and namespaced a boolean")
    if not fields["version"] or not fields["resource"] or not fields["kind"]:
        raise ProtocolError("type needs a version, a resource and a kind")
    if len(fields["group"]) > MAX_GROUP or any(
            len(fields[k]) > MAX_LABEL for k in ("version", "resource", "kind")):
        raise ProtocolError(f"type: a group has at most {MAX_GROUP} characters, a version, resource"
                            f" or kind at most {MAX_LABEL}")
    return ResourceType(namespaced=namespaced, singular=_optional_name(data, "singularName"),
                        short_names=_names(data, "shortNames"), categories=_names(data, "categories"),
                        **fields)


MAX_NAMES = 32  # short names or categories of one type


def _optional_name(data: dict[str, Any], key: str) -> str:
    value = data.get(key) or ""
    if not isinstance(value, str) or len(value) > MAX_LABEL:
        raise ProtocolError(f"type: {key} must be a string of at most {MAX_LABEL} characters")
    return value


def _names(data: dict[str, Any], key: str) -> tuple[str, ...]:
    """Discovery's short names or categories: optional (older agents omit them), bounded."""
    value = data.get(key) or []
    if not isinstance(value, list) or len(value) > MAX_NAMES or not all(
            isinstance(v, str) and 0 < len(v) <= MAX_LABEL for v in value):
        raise ProtocolError(f"type: {key} must be a list of at most {MAX_NAMES} names of at most"
                            f" {MAX_LABEL} characters")
    return tuple(value)


def change_to_dict(change: WatchEvent) -> dict[str, Any]:
    return {"type": change.type, "object": change.object}


def change_from_dict(data: Any) -> WatchEvent:
    if not isinstance(data, dict) or data.get("type") not in CHANGE_TYPES:
        raise ProtocolError("an event needs a type of ADDED, MODIFIED or DELETED")
    kind: ChangeType = data["type"]
    return WatchEvent(type=kind, object=_check_object(data.get("object")))


def _check_object(obj: Any) -> KubeObject:
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        raise ProtocolError("an object needs metadata")
    meta = obj["metadata"]
    if not isinstance(meta.get("name"), str) or not meta.get("resourceVersion"):
        raise ProtocolError("an object needs metadata.name and metadata.resourceVersion")
    return obj


def items_from_list(data: Any) -> list[KubeObject]:
    if not isinstance(data, list):
        raise ProtocolError("items must be a list")
    for obj in data:
        _check_object(obj)
    return data


IDENTITY = ("name", "namespace", "uid", "resourceVersion")
_IDENTITY_CHARS = 1024


def omitted(obj: KubeObject, size: int) -> dict[str, Any]:
    """What is sent in place of an object over :data:`MAX_OBJECT_BYTES`: its identity (each
    field cut to a bounded length, so the stand-in always fits) and its size."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    identity = {k: v[:_IDENTITY_CHARS] for k in IDENTITY if isinstance(v := meta.get(k), str)}
    kind = obj.get("kind")
    return {"kind": kind[:_IDENTITY_CHARS] if isinstance(kind, str) else None, "metadata": identity,
            "bytes": size}


# --- bodies ---------------------------------------------------------------------------


def snapshot_start_body(rtype: ResourceType, *, reason: str | None = None) -> dict[str, Any]:
    """``reason`` (``agent.events.RelistReason``) is optional: older agents send none."""
    body: dict[str, Any] = {"type": type_to_dict(rtype)}
    if reason is not None:
        body["reason"] = reason
    return body


def snapshot_page_body(rtype: ResourceType, items: list[KubeObject]) -> dict[str, Any]:
    return {"type": type_to_dict(rtype), "items": items}


def snapshot_end_body(rtype: ResourceType, *, resource_version: str, count: int) -> dict[str, Any]:
    return {"type": type_to_dict(rtype), "resourceVersion": resource_version, "count": count}


def changes_body(
    rtype: ResourceType, changes: list[WatchEvent], *, resource_version: str, after: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": type_to_dict(rtype),
        "events": [change_to_dict(change) for change in changes],
        "resourceVersion": resource_version,
    }
    if after is not None:
        body["after"] = after
    return body


def remove_type_body(rtype: ResourceType) -> dict[str, Any]:
    return {"type": type_to_dict(rtype)}


def required_str(body: Any, key: str) -> str:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{key} must be a non-empty string")
    return value


def required_int(body: Any, key: str) -> int:
    value = body.get(key) if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"{key} must be a non-negative integer")
    return value
