"""Legacy discovery documents: /version, /api, /api/v1, /apis, /apis/{g}/{v}.

kubectl 1.32 first asks for aggregated discovery
(``application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList``);
answering with plain ``application/json`` APIVersions/APIGroupList makes it
fall back to these per-group documents, as it does against older servers
(https://kubernetes.io/docs/concepts/overview/kubernetes-api/#discovery-api).
"""

from __future__ import annotations

from typing import Any

from kube.resources import ResourceType
from kubesim.resources import Registry
from kubesim.scale import scalable

JSON = dict[str, Any]

SUBRESOURCE_VERBS = ("get", "patch", "update")


def version_info() -> JSON:
    return {
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-kubesim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T00:00:00Z",
        "goVersion": "go1.23.3",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> JSON:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group(group: str, types: list[ResourceType]) -> JSON:
    versions = sorted({t.version for t in types})
    preferred = types[0].version
    return {
        "name": group,
        "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
        "preferredVersion": {"groupVersion": f"{group}/{preferred}", "version": preferred},
    }


def api_group_list(registry: Registry) -> JSON:
    groups = [_group(group, types) for group, types in registry.groups().items() if group]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> JSON | None:
    types = registry.groups().get(group)
    if not types:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, types)}


def _resource(rtype: ResourceType) -> JSON:
    out: JSON = {
        "name": rtype.resource,
        "singularName": rtype.singular_name,
        "namespaced": rtype.namespaced,
        "kind": rtype.kind,
        "verbs": list(rtype.verbs),
    }
    if rtype.short_names:
        out["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        out["categories"] = list(rtype.categories)
    return out


def _status(rtype: ResourceType) -> JSON:
    return {
        "name": f"{rtype.resource}/status",
        "singularName": "",
        "namespaced": rtype.namespaced,
        "kind": rtype.kind,
        "verbs": list(SUBRESOURCE_VERBS),
    }


def _scale(rtype: ResourceType) -> JSON:
    return {
        "name": f"{rtype.resource}/scale",
        "singularName": "",
        "namespaced": rtype.namespaced,
        "group": "autoscaling",
        "version": "v1",
        "kind": "Scale",
        "verbs": list(SUBRESOURCE_VERBS),
    }


def resource_list(registry: Registry, group: str, version: str) -> JSON | None:
    types = [t for t in registry.groups().get(group, []) if t.version == version]
    if not types:
        return None
    resources: list[JSON] = []
    for rtype in types:
        resources.append(_resource(rtype))
        if rtype.has_status:
            resources.append(_status(rtype))
        if scalable(rtype):
            resources.append(_scale(rtype))
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }
