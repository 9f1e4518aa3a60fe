"""Which resource types a member cluster serves, via the legacy discovery endpoints.

``/api`` and ``/apis`` list the groups (``/apis`` also names each group's
``preferredVersion``); ``/api/v1`` and ``/apis/{group}/{version}`` list the resources of
one group-version with their verbs. Only the preferred version of each group is synced:
the store keeps one version per group/resource, and the preferred version is what
``kubectl get`` shows (https://kubernetes.io/docs/reference/using-api/#api-groups).

Kept: top-level resources (no ``/`` in the name, so ``pods/status`` and ``pods/log`` are
out) whose verbs include both ``list`` and ``watch``.

Excluded by default (:data:`DEFAULT_EXCLUDED`), as heartbeat noise that would dominate
the change stream and answer no inventory question:

* ``leases.coordination.k8s.io``: every node and every leader-elected controller renews
  one every few seconds.
* ``events.events.k8s.io``: the same objects as core ``events`` (v1) served a second
  time. The core ``events`` type is kept: every cluster serves it and kubectl's
  ``get events`` reads it.

A group-version whose discovery fails (an aggregated API whose backend is down answers
503) is reported in :attr:`Discovery.failed_groups` instead of failing everything, so
the caller can tell "no longer served" from "not answering right now".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.errors import KubeClientError
from agent.kubeclient import KubeClient
from kube.resources import ResourceType

logger = logging.getLogger(__name__)

DEFAULT_EXCLUDED: frozenset[str] = frozenset({"leases.coordination.k8s.io", "events.events.k8s.io"})
CONCURRENCY = 8


@dataclass(frozen=True, kw_only=True)
class Discovery:
    """The outcome of one discovery round."""

    types: list[ResourceType]
    failed_groups: frozenset[str] = field(default_factory=frozenset)


async def discover(client: KubeClient, *, excluded: Iterable[str] = DEFAULT_EXCLUDED) -> Discovery:
    """Every listable and watchable resource type in its group's preferred version."""
    group_versions = await _preferred_group_versions(client)
    semaphore = asyncio.Semaphore(CONCURRENCY)
    results = await asyncio.gather(
        *(_resources_of(client, group=g, version=v, semaphore=semaphore) for g, v in group_versions)
    )
    skip = frozenset(excluded)
    types: list[ResourceType] = []
    failed: set[str] = set()
    for (group, _version), found in zip(group_versions, results, strict=True):
        if found is None:
            failed.add(group)
            continue
        types.extend(rtype for rtype in found if rtype.key not in skip)
    return Discovery(types=sorted(types, key=lambda t: t.key), failed_groups=frozenset(failed))


async def _preferred_group_versions(client: KubeClient) -> list[tuple[str, str]]:
    core = await client.get_json("/api")
    pairs: list[tuple[str, str]] = []
    if "v1" in core.get("versions", []):
        pairs.append(("", "v1"))
    groups = await client.get_json("/apis")
    for group in groups.get("groups", []):
        version = _preferred_version(group)
        if version is not None:
            pairs.append((str(group["name"]), version))
    return pairs


def _preferred_version(group: dict[str, Any]) -> str | None:
    preferred = group.get("preferredVersion") or {}
    if preferred.get("version"):
        return str(preferred["version"])
    versions = group.get("versions") or []
    return str(versions[0]["version"]) if versions else None


async def _resources_of(
    client: KubeClient, *, group: str, version: str, semaphore: asyncio.Semaphore
) -> list[ResourceType] | None:
    path = f"/apis/{group}/{version}" if group else f"/api/{version}"
    async with semaphore:
        try:
            listing = await client.get_json(path)
        except KubeClientError as exc:
            logger.warning(
                "discovery of a group-version failed",
                extra={"group_version": path, "error": str(exc)},
            )
            return None
    return [
        ResourceType(
            group=group,
            version=version,
            resource=str(res["name"]),
            kind=str(res.get("kind", "")),
            namespaced=bool(res.get("namespaced", False)),
            singular=str(res.get("singularName") or ""),
            short_names=_names(res.get("shortNames")),
            categories=_names(res.get("categories")),
        )
        for res in listing.get("resources", [])
        if _is_syncable(res)
    ]


def _names(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _is_syncable(resource: dict[str, Any]) -> bool:
    verbs = set(resource.get("verbs") or [])
    return "/" not in str(resource.get("name", "/")) and {"list", "watch"} <= verbs
