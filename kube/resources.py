"""Resource types: the one description of a served group/version/resource that every room uses.

The agent builds them from a member cluster's discovery, the wire protocol carries them to
the syncer, the store keys its rows and sync state by them, the read API serves them, and
kubesim declares the types it simulates with them.

A type's identity is (group, version, resource, kind, namespaced). What discovery says to
describe it to clients (short names, categories, verbs, subresources, printer columns) is
carried along but does not take part in equality: a cluster that adds a short name still
serves the same type, and nothing that compares types should restart or resync for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A CRD's additionalPrinterColumns: (name, type, jsonPath, priority).
PrinterColumn = tuple[str, str, str, int]


def type_key(group: str, resource: str) -> str:
    """The version-free name of a group/resource, as Kubernetes writes it: ``deployments.apps``,
    or ``pods`` for the core group.

    This is the string kubectl accepts (``kubectl get deployments.apps``) and kube-apiserver
    puts in error messages; the agent's selection patterns and checkpoints use it, so it is
    part of the ingest protocol.
    """
    return f"{resource}.{group}" if group else resource


@dataclass(frozen=True, kw_only=True, slots=True)
class ResourceType:
    """One served (group, version, resource)."""

    group: str  # "" for the core group
    version: str
    resource: str  # plural, e.g. "deployments"
    kind: str
    namespaced: bool
    # How discovery describes it to clients (kubectl's short names and categories, the verbs
    # and the status subresource), and a custom type's printer columns and defining CRD: carried
    # along, not part of the type's identity.
    singular: str = field(default="", compare=False)
    short_names: tuple[str, ...] = field(default=(), compare=False)
    categories: tuple[str, ...] = field(default=(), compare=False)
    verbs: tuple[str, ...] = field(default=(), compare=False)
    has_status: bool = field(default=False, compare=False)
    printer_columns: tuple[PrinterColumn, ...] = field(default=(), compare=False)
    crd_name: str = field(default="", compare=False)  # "" for built-in types

    @property
    def key(self) -> str:
        """Version-free identity: the store keeps one version per group/resource."""
        return type_key(self.group, self.resource)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular_name(self) -> str:
        """Discovery's singular name; kube-apiserver derives it from the kind when unset."""
        return self.singular or self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def list_path(self, namespace: str | None = None) -> str:
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None and self.namespaced:
            return f"{prefix}/namespaces/{namespace}/{self.resource}"
        return f"{prefix}/{self.resource}"
