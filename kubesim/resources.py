"""The resource types kubesim serves, and how a CRD becomes one.

Names, short names, categories and verbs mirror what kube-apiserver 1.32
reports in discovery (``kubectl api-resources -o wide`` on a real cluster).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
NO_COLLECTION_DELETE = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    has_status: bool = True
    # Kinds whose objects carry no spec: every change counts for generation.
    singular: str = ""
    crd_name: str = field(default="", compare=False)
    # A CRD's additionalPrinterColumns: (name, type, jsonPath, priority).
    printer_columns: tuple[tuple[str, str, str, int], ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        """Storage key prefix, as the group/resource pair kube-apiserver uses."""
        return f"{self.group}/{self.plural}"

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _core(
    plural: str, kind: str, namespaced: bool = True, short: tuple[str, ...] = (), **kw: Any
) -> ResourceType:
    return ResourceType("", "v1", plural, kind, namespaced, short, **kw)


ALL = ("all",)

BUILTIN: tuple[ResourceType, ...] = (
    _core("namespaces", "Namespace", False, ("ns",), verbs=NO_COLLECTION_DELETE),
    _core("nodes", "Node", False, ("no",)),
    _core("pods", "Pod", True, ("po",), categories=ALL),
    _core("services", "Service", True, ("svc",), categories=ALL, verbs=NO_COLLECTION_DELETE),
    _core("endpoints", "Endpoints", True, ("ep",), has_status=False, singular="endpoints"),
    _core("configmaps", "ConfigMap", True, ("cm",), has_status=False),
    _core("secrets", "Secret", True, has_status=False),
    _core("events", "Event", True, ("ev",), has_status=False),
    _core("serviceaccounts", "ServiceAccount", True, ("sa",), has_status=False),
    _core("persistentvolumes", "PersistentVolume", False, ("pv",)),
    _core("persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",)),
    ResourceType("apps", "v1", "deployments", "Deployment", True, ("deploy",), ALL),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ALL),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), ALL),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ALL),
    ResourceType("batch", "v1", "jobs", "Job", True, (), ALL),
    ResourceType("batch", "v1", "cronjobs", "CronJob", True, ("cj",), ALL),
    ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",)),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, has_status=False),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        ("api-extensions",),
    ),
)

CRD_KEY = "apiextensions.k8s.io/customresourcedefinitions"
NAMESPACE_KEY = "/namespaces"


def served_version(spec: JSON) -> str | None:
    """The version a CRD's objects are stored and served in.

    kube-apiserver stores the ``storage: true`` version; we serve only that one
    so there is a single preferred version per group/resource.
    """
    versions = spec.get("versions") or []
    for version in versions:
        if version.get("storage") and version.get("served", True):
            return str(version["name"])
    for version in versions:
        if version.get("served", True):
            return str(version["name"])
    return None


def has_status_subresource(spec: JSON, version: str) -> bool:
    for item in spec.get("versions") or []:
        if item.get("name") == version:
            return "status" in (item.get("subresources") or {})
    return False


def printer_columns(spec: JSON, version: str) -> tuple[tuple[str, str, str, int], ...]:
    for item in spec.get("versions") or []:
        if item.get("name") == version:
            return tuple(
                (str(c.get("name", "")), str(c.get("type", "string")), str(c.get("jsonPath", "")),
                 int(c.get("priority", 0)))
                for c in item.get("additionalPrinterColumns") or []
            )
    return ()


def from_crd(crd: JSON) -> ResourceType | None:
    """Build the resource type a CRD declares (``spec.names``, ``spec.scope``)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    version = served_version(spec)
    if not version or not names.get("plural") or not names.get("kind") or not spec.get("group"):
        return None
    return ResourceType(
        group=str(spec["group"]),
        version=version,
        plural=str(names["plural"]),
        kind=str(names["kind"]),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        has_status=has_status_subresource(spec, version),
        singular=str(names.get("singular") or ""),
        crd_name=str((crd.get("metadata") or {}).get("name", "")),
        printer_columns=printer_columns(spec, version),
    )


class Registry:
    """Served resource types, by (group, version, plural) and by storage key."""

    def __init__(self) -> None:
        self._by_key: dict[str, ResourceType] = {}
        for rtype in BUILTIN:
            self.add(rtype)

    def add(self, rtype: ResourceType) -> None:
        self._by_key[rtype.key] = rtype

    def remove(self, key: str) -> ResourceType | None:
        return self._by_key.pop(key, None)

    def by_key(self, key: str) -> ResourceType | None:
        return self._by_key.get(key)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        rtype = self._by_key.get(f"{group}/{plural}")
        if rtype is None or rtype.version != version:
            return None
        return rtype

    def all(self) -> list[ResourceType]:
        return list(self._by_key.values())

    def groups(self) -> dict[str, list[ResourceType]]:
        """Resource types by API group, groups in first-registration order."""
        out: dict[str, list[ResourceType]] = {}
        for rtype in self._by_key.values():
            out.setdefault(rtype.group, []).append(rtype)
        return out
