"""The resource types kubesim serves, and how a CRD becomes one.

Names, short names, categories and verbs mirror what kube-apiserver 1.32
reports in discovery (``kubectl api-resources -o wide`` on a real cluster).
"""

from __future__ import annotations

from typing import Any

from kube.resources import PrinterColumn, ResourceType, type_key

JSON = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
NO_COLLECTION_DELETE = ("create", "delete", "get", "list", "patch", "update", "watch")


def _core(
    resource: str, kind: str, namespaced: bool = True, short: tuple[str, ...] = (), **kw: Any
) -> ResourceType:
    return _type("", resource, kind, namespaced, short, **kw)


def _type(
    group: str,
    resource: str,
    kind: str,
    namespaced: bool,
    short: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    *,
    verbs: tuple[str, ...] = ALL_VERBS,
    has_status: bool = True,
    singular: str = "",
) -> ResourceType:
    """A built-in v1 type; most serve every verb and a status subresource."""
    return ResourceType(
        group=group, version="v1", resource=resource, kind=kind, namespaced=namespaced,
        short_names=short, categories=categories, verbs=verbs, has_status=has_status,
        singular=singular,
    )


ALL = ("all",)
RBAC = "rbac.authorization.k8s.io"

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
    _type("apps", "deployments", "Deployment", True, ("deploy",), ALL),
    _type("apps", "replicasets", "ReplicaSet", True, ("rs",), ALL),
    _type("apps", "statefulsets", "StatefulSet", True, ("sts",), ALL),
    _type("apps", "daemonsets", "DaemonSet", True, ("ds",), ALL),
    _type("batch", "jobs", "Job", True, (), ALL),
    _type("batch", "cronjobs", "CronJob", True, ("cj",), ALL),
    _type("networking.k8s.io", "ingresses", "Ingress", True, ("ing",)),
    _type("networking.k8s.io", "networkpolicies", "NetworkPolicy", True, ("netpol",), has_status=False),
    _type("coordination.k8s.io", "leases", "Lease", True, has_status=False),
    _type("policy", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",)),
    _type(RBAC, "clusterroles", "ClusterRole", False, has_status=False),
    _type(RBAC, "clusterrolebindings", "ClusterRoleBinding", False, has_status=False),
    _type(RBAC, "roles", "Role", True, has_status=False),
    _type(RBAC, "rolebindings", "RoleBinding", True, has_status=False),
    # Answered, never stored (kubesim.tokenreview).
    _type("authentication.k8s.io", "tokenreviews", "TokenReview", False, verbs=("create",),
          has_status=False),
    _type("apiregistration.k8s.io", "apiservices", "APIService", False, (), ("api-extensions",)),
    _type(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        ("api-extensions",),
    ),
)

CRD_KEY = type_key("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_KEY = type_key("", "namespaces")


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


def printer_columns(spec: JSON, version: str) -> tuple[PrinterColumn, ...]:
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
        resource=str(names["plural"]),
        kind=str(names["kind"]),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        has_status=has_status_subresource(spec, version),
        singular=str(names.get("singular") or ""),
        verbs=ALL_VERBS,
        crd_name=str((crd.get("metadata") or {}).get("name", "")),
        printer_columns=printer_columns(spec, version),
    )


class Registry:
    """Served resource types, by (group, version, resource) and by key (``ResourceType.key``)."""

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

    def lookup(self, group: str, version: str, resource: str) -> ResourceType | None:
        rtype = self._by_key.get(type_key(group, resource))
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
