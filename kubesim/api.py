"""Write semantics of kube-apiserver's generic registry.

Create fills ``uid``, ``creationTimestamp``, ``generation`` and the namespace;
update enforces optimistic concurrency on ``metadata.resourceVersion``
(https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions);
``generation`` only moves when something outside metadata and status changes;
the main resource keeps the old status and ``/status`` keeps everything but the
status, as the built-in strategies do. Writes that change nothing are not
written (no new resourceVersion, no watch event), as etcd3's GuaranteedUpdate
skips them. No controllers run: objects stay as written.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from kube.resources import ResourceType
from kubesim import errors
from kubesim.patch import apply_patch
from kubesim.resources import CRD_KEY, NAMESPACE_KEY, Registry, from_crd
from kubesim.store import Entry, Store, TypeStore

JSON = dict[str, Any]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
# Kinds whose names are DNS-1123 labels rather than subdomains.
LABEL_NAMED = frozenset({"Namespace", "Service"})
NO_GENERATION = frozenset({"", "coordination.k8s.io"})


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_part(obj: JSON) -> JSON:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def validate_name(rtype: ResourceType, name: str) -> None:
    """422 Invalid for a missing or malformed ``metadata.name``."""
    if not name:
        raise errors.invalid(
            rtype.kind,
            "",
            rtype.group,
            [("metadata.name", "Required value: name or generateName is required")],
        )
    label = rtype.kind in LABEL_NAMED
    pattern, msg, limit = (_LABEL, LABEL_MSG, 63) if label else (_SUBDOMAIN, SUBDOMAIN_MSG, 253)
    if len(name) > limit:
        msg = f"must be no more than {limit} characters"
    elif pattern.match(name):
        return
    raise errors.invalid(
        rtype.kind, name, rtype.group, [("metadata.name", f'Invalid value: "{name}": {msg}')]
    )


def _check_type(rtype: ResourceType, body: JSON) -> None:
    """A body for another kind or version is a 400, as the decoder reports it."""
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if api_version and api_version != rtype.api_version:
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({rtype.api_version})"
        )
    if kind and kind != rtype.kind:
        raise errors.bad_request(
            f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})"
        )


class Api:
    """Create, read, update, patch and delete against a :class:`Store`."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        for rtype in registry.all():
            store.ensure_type(rtype)

    def tstore(self, rtype: ResourceType) -> TypeStore:
        return self.store.ensure_type(rtype)

    def get(self, rtype: ResourceType, namespace: str, name: str) -> Entry:
        entry = self.tstore(rtype).get(namespace, name)
        if entry is None:
            raise errors.not_found(rtype.resource, name, rtype.group)
        return entry

    def _check_body(self, rtype: ResourceType, body: Any, namespace: str) -> JSON:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request was not a JSON object")
        _check_type(rtype, body)
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        body_ns = meta.get("namespace") or ""
        if rtype.namespaced:
            if body_ns and body_ns != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        body["kind"] = rtype.kind
        body["apiVersion"] = rtype.api_version
        return body

    def _require_namespace(self, rtype: ResourceType, namespace: str) -> None:
        if rtype.namespaced:
            ns_type = self.registry.by_key(NAMESPACE_KEY)
            assert ns_type is not None
            if self.tstore(ns_type).get("", namespace) is None:
                raise errors.not_found("namespaces", namespace)

    def create(
        self, rtype: ResourceType, namespace: str, body: Any, record: bool = True,
        dry_run: bool = False,
    ) -> Entry:
        obj = self._check_body(rtype, body, namespace)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        validate_name(rtype, str(meta.get("name") or ""))
        self._require_namespace(rtype, namespace)
        tstore = self.tstore(rtype)
        if tstore.get(namespace, meta["name"]) is not None:
            raise errors.already_exists(rtype.resource, meta["name"], rtype.group)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        meta.pop("resourceVersion", None)
        meta.pop("deletionTimestamp", None)
        if rtype.group not in NO_GENERATION:
            meta["generation"] = 1
        self._default(rtype, obj)
        if dry_run:
            return self.store.preview(tstore, obj, None)
        entry = self.store.write(tstore, obj, record)
        if rtype.key == CRD_KEY:
            self._register_crd(obj)
        return entry

    def _default(self, rtype: ResourceType, obj: JSON) -> None:
        if rtype.key == NAMESPACE_KEY:
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj.setdefault("status", {"phase": "Active"})
            labels = obj["metadata"].setdefault("labels", {})
            labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        elif rtype.key == "pods":
            obj.setdefault("status", {}).setdefault("phase", "Pending")
        elif rtype.key == CRD_KEY:
            names = (obj.get("spec") or {}).get("names") or {}
            obj["status"] = {
                "acceptedNames": names,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
                ],
                "storedVersions": [v["name"] for v in obj["spec"].get("versions", []) if v.get("storage")],
            }

    def _register_crd(self, crd: JSON) -> None:
        rtype = from_crd(crd)
        if rtype is None:
            return
        self.registry.add(rtype)
        self.store.ensure_type(rtype)

    def update(
        self, rtype: ResourceType, namespace: str, name: str, body: Any, subresource: str = "",
        dry_run: bool = False,
    ) -> Entry:
        obj = self._check_body(rtype, body, namespace)
        current = self.get(rtype, namespace, name)
        meta = obj["metadata"]
        if meta.get("name", name) != name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv and wanted_rv != str(current.rv):
            raise errors.conflict(rtype.resource, name, rtype.group)
        return self._replace(rtype, current, obj, subresource, dry_run)

    def _replace(
        self, rtype: ResourceType, current: Entry, obj: JSON, subresource: str, dry_run: bool,
        *, old: JSON | None = None,
    ) -> Entry:
        """Store ``obj`` in place of ``current`` (``old``: its decoded object, which must
        share no metadata dict with ``obj``, as ``obj`` is changed in place)."""
        if old is None:
            old = orjson.loads(current.raw)
        if subresource == "status":
            # The status strategies keep the old spec (and owners) but take the
            # new status and metadata, e.g. podStatusStrategy.PrepareForUpdate.
            obj = {**old, "metadata": obj["metadata"], "status": obj.get("status", old.get("status"))}
            if "ownerReferences" in old["metadata"]:
                obj["metadata"]["ownerReferences"] = old["metadata"]["ownerReferences"]
        elif rtype.has_status and "status" in old:
            obj["status"] = old["status"]
        elif rtype.has_status:
            obj.pop("status", None)
        meta = obj["metadata"]
        for kept in ("uid", "creationTimestamp", "namespace", "name", "generation"):
            if kept in old["metadata"]:
                meta[kept] = old["metadata"][kept]
        meta["resourceVersion"] = str(current.rv)
        if rtype.key == NAMESPACE_KEY:
            meta["labels"] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": meta["name"]}
        if "generation" in meta and _spec_part(obj) != _spec_part(old):
            meta["generation"] = int(meta["generation"]) + 1
        if obj == old:
            return current
        if dry_run:
            return self.store.preview(self.tstore(rtype), obj, current.rv)
        entry = self.store.write(self.tstore(rtype), obj)
        if rtype.key == CRD_KEY:
            self._register_crd(obj)
        return entry

    def patch(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        subresource: str = "",
        dry_run: bool = False,
        validate: Callable[[JSON], None] | None = None,
    ) -> Entry:
        """``validate`` sees the patched object first (field validation: kube-apiserver
        decodes the patch's result strictly, before any other check)."""
        current = self.get(rtype, namespace, name)
        old = orjson.loads(current.raw)
        patched = apply_patch(content_type, old, patch, custom=bool(rtype.crd_name))
        if validate is not None:
            validate(patched)
        # Patches copy only what they change, so the result may hold old's metadata
        # dict, which the checks below change in place (and nothing deeper): copying
        # that one dict keeps old as stored, and spares decoding the object again, the
        # costliest step of a write.
        if isinstance(patched, dict) and patched.get("metadata") is old["metadata"]:
            patched["metadata"] = dict(patched["metadata"])
        obj = self._check_body(rtype, patched, namespace)
        wanted_rv = obj["metadata"].get("resourceVersion")
        if wanted_rv and wanted_rv != str(current.rv):
            raise errors.conflict(rtype.resource, name, rtype.group)
        return self._replace(rtype, current, obj, subresource, dry_run, old=old)

    def delete(
        self, rtype: ResourceType, namespace: str, name: str, dry_run: bool = False
    ) -> Entry:
        """Delete at once (no finalizers or grace periods are simulated)."""
        entry = self.get(rtype, namespace, name)
        if dry_run:
            return entry
        if rtype.key == NAMESPACE_KEY:
            self._empty_namespace(name)
        if rtype.key == CRD_KEY:
            self._drop_crd(name)
        tombstone = self.store.remove(self.tstore(rtype), entry.key)
        assert tombstone is not None
        return tombstone

    def _empty_namespace(self, namespace: str) -> None:
        # kube marks the namespace Terminating and a controller empties it; we
        # empty it synchronously so clients see the same DELETED events.
        for tstore in list(self.store.types.values()):
            if tstore.rtype.namespaced:
                low, high = tstore.key_range(namespace)
                for key in tstore.keys[low:high]:
                    self.store.remove(tstore, key)

    def _drop_crd(self, name: str) -> None:
        for rtype in self.registry.all():
            if rtype.crd_name == name:
                tstore = self.tstore(rtype)
                for key in list(tstore.keys):
                    self.store.remove(tstore, key)
                self.registry.remove(rtype.key)
                self.store.drop_type(rtype.key)
