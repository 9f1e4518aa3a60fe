"""Per-cluster quotas: how many resource types and objects one member cluster may keep.

One broken or hostile agent must not fill the store for every other cluster. The defaults
are far above what large clusters hold (a few hundred types with many CRDs, a million
objects); a cluster's registry settings override them (``maxTypes``, ``maxObjects``).

A write that would go over a quota is refused whole, like Kubernetes refuses a create that
exceeds a ResourceQuota: 403 Forbidden, "exceeded quota: ..."
(https://kubernetes.io/docs/concepts/policy/resource-quotas/). The refusal is kept in the
type's last error (a type refused for the types quota has no sync state: the cluster's last
error). Quotas are checked by each write against committed counts, so writes of several
types committing at once may pass a quota by a page or a batch each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_TYPES = 2_000
DEFAULT_MAX_OBJECTS = 10_000_000
SETTINGS = {"maxTypes": "types", "maxObjects": "objects"}


class QuotaExceeded(RuntimeError):
    """A write would take a cluster over one of its quotas (HTTP 403)."""

    def __init__(self, message: str, *, new_type: bool = False) -> None:
        super().__init__(f"exceeded quota: {message}")
        self.new_type = new_type  # the type has no sync state to keep the error in


@dataclass(frozen=True, kw_only=True, slots=True)
class Quota:
    types: int = DEFAULT_MAX_TYPES
    objects: int = DEFAULT_MAX_OBJECTS

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Quota:
        """The quota a cluster's settings ask for (checked when they were stored)."""
        given = {field: settings[key] for key, field in SETTINGS.items() if _positive(settings.get(key))}
        return cls(**given)


def check_settings(settings: Mapping[str, Any]) -> None:
    """``ValueError`` unless every quota setting given is a positive integer."""
    for key in SETTINGS:
        if key in settings and not _positive(settings[key]):
            raise ValueError(f"settings.{key} must be a positive integer")


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
