"""Discovery: what the aggregated API serves, as kubectl and client libraries ask for it.

Legacy documents (``/api``, ``/api/v1``, ``/apis``, ``/apis/{g}``, ``/apis/{g}/{v}``) and
aggregated discovery (``apidiscovery.k8s.io`` v2, and v2beta1 for kubectl 1.27-1.29), which
answers ``/api`` and ``/apis`` in one request each
(https://kubernetes.io/docs/concepts/overview/kubernetes-api/#aggregated-discovery).
Every type is offered with the verbs ``get``, ``list`` and ``watch`` only: kubepedia is a
read-only view. Under ``/clusters/{cluster}`` the documents describe what that cluster
serves, not the union (``apiserver.served``).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from apiserver.catalog import Catalog
from apiserver.served import served_catalog
from kube.resources import ResourceType
from kube.status import StatusError

JSON = dict[str, Any]
VERBS = ("get", "list", "watch")
AGGREGATED_VERSIONS = ("v2", "v2beta1")
KUBERNETES_VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.0-kubepedia",
                      "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                      "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc",
                      "platform": "linux/amd64"}
# Clusterpedia's API (apiserver.collections), served by kubepedia itself: at the root only.
CLUSTERPEDIA = ResourceType(group="clusterpedia.io", version="v1beta1", resource="collectionresources",
                            kind="CollectionResource", namespaced=False, singular="collectionresource")
CLUSTERPEDIA_VERBS = ("get", "list")


def _aggregated(accept: str) -> str | None:
    """The apidiscovery version asked for in ``Accept``, if any."""
    for alternative in accept.split(","):
        params = dict(p.strip().split("=", 1) for p in alternative.split(";")[1:] if "=" in p)
        if params.get("g") == "apidiscovery.k8s.io" and params.get("as") == "APIGroupDiscoveryList" \
                and params.get("v") in AGGREGATED_VERSIONS:
            return params["v"]
    return None


def _json(body: JSON, content_type: str = "application/json") -> web.Response:
    response = web.Response(body=orjson.dumps(body))
    response.headers["Content-Type"] = content_type
    return response


def _names(t: ResourceType) -> JSON:
    """Short names and categories, present only when the type has them (as kube-apiserver)."""
    out: JSON = {}
    if t.short_names:
        out["shortNames"] = list(t.short_names)
    if t.categories:
        out["categories"] = list(t.categories)
    return out


def _resource(t: ResourceType, verbs: tuple[str, ...] = VERBS) -> JSON:
    return {"name": t.resource, "singularName": t.singular_name, "namespaced": t.namespaced,
            "kind": t.kind, "verbs": list(verbs), **_names(t)}


def _group(name: str, versions: list[str]) -> JSON:
    return {"name": name,
            "versions": [{"groupVersion": f"{name}/{v}", "version": v} for v in versions],
            "preferredVersion": {"groupVersion": f"{name}/{versions[0]}", "version": versions[0]}}


def _aggregated_resource(t: ResourceType, verbs: tuple[str, ...] = VERBS) -> JSON:
    return {"resource": t.resource,
            "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
            "scope": "Namespaced" if t.namespaced else "Cluster",
            "singularResource": t.singular_name, "verbs": list(verbs), **_names(t)}


def _aggregated_version(catalog: Catalog, group: str, version: str) -> JSON:
    return {"version": version, "freshness": "Current",
            "resources": [_aggregated_resource(t) for t in catalog.in_version(group, version)]}


def aggregated_list(catalog: Catalog, *, core: bool, version: str, own: bool = False) -> JSON:
    """``own``: with the groups kubepedia serves itself (at the root, not under a cluster)."""
    items = []
    for group, versions in catalog.groups().items():
        if (group == "") != core:
            continue
        items.append({"metadata": {"name": group, "creationTimestamp": None},
                      "versions": [_aggregated_version(catalog, group, v) for v in versions]})
    if own and not core:
        items.append({"metadata": {"name": CLUSTERPEDIA.group, "creationTimestamp": None},
                      "versions": [{"version": CLUSTERPEDIA.version, "freshness": "Current",
                                    "resources": [_aggregated_resource(CLUSTERPEDIA, CLUSTERPEDIA_VERBS)]}]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}


def _aggregated_response(request: web.Request, catalog: Catalog, *, core: bool,
                         version: str) -> web.Response:
    content_type = f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
    return _json(aggregated_list(catalog, core=core, version=version, own=_at_root(request)), content_type)


def _at_root(request: web.Request) -> bool:
    """Whether the request reads the root's discovery: not one cluster's, nor the documents
    under Clusterpedia's search prefix (which describe the synced types only)."""
    return request.path in ("/api", "/apis")


async def get_version(request: web.Request) -> web.Response:
    await served_catalog(request)  # an unknown cluster: 404
    return _json(KUBERNETES_VERSION)


async def get_api(request: web.Request) -> web.Response:
    catalog = await served_catalog(request)
    aggregated = _aggregated(request.headers.get("Accept", ""))
    if aggregated:
        return _aggregated_response(request, catalog, core=True, version=aggregated)
    return _json({"kind": "APIVersions", "versions": ["v1"],
                  "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}]})


async def get_apis(request: web.Request) -> web.Response:
    catalog = await served_catalog(request)
    aggregated = _aggregated(request.headers.get("Accept", ""))
    if aggregated:
        return _aggregated_response(request, catalog, core=False, version=aggregated)
    groups = [_group(g, versions) for g, versions in catalog.groups().items() if g]
    if _at_root(request):
        groups.append(_group(CLUSTERPEDIA.group, [CLUSTERPEDIA.version]))
    return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})


async def get_group(request: web.Request) -> web.Response:
    group = request.match_info["group"]
    versions = (await served_catalog(request)).groups().get(group)
    if not versions or not group:
        raise StatusError(404, "NotFound", "the server could not find the requested resource")
    return _json({"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)})


async def get_resources(request: web.Request) -> web.Response:
    group, version = request.match_info.get("group", ""), request.match_info["version"]
    types = (await served_catalog(request)).in_version(group, version)
    if not types:
        raise StatusError(404, "NotFound", "the server could not find the requested resource")
    return _json({"kind": "APIResourceList", "apiVersion": "v1",
                  "groupVersion": f"{group}/{version}" if group else version,
                  "resources": [_resource(t) for t in types]})


async def get_own_group(request: web.Request) -> web.Response:
    return _json({"kind": "APIGroup", "apiVersion": "v1",
                  **_group(CLUSTERPEDIA.group, [CLUSTERPEDIA.version])})


async def get_own_resources(request: web.Request) -> web.Response:
    return _json({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": CLUSTERPEDIA.api_version,
                  "resources": [_resource(CLUSTERPEDIA, CLUSTERPEDIA_VERBS)]})


def discovery_routes(prefix: str) -> list[tuple[str, Any]]:
    own: list[tuple[str, Any]] = [] if prefix else [  # before the generic paths that would match them
        (f"/apis/{CLUSTERPEDIA.group}", get_own_group),
        (f"/apis/{CLUSTERPEDIA.api_version}", get_own_resources)]
    return [*own,
            (f"{prefix}/version", get_version), (f"{prefix}/api", get_api), (f"{prefix}/apis", get_apis),
            (f"{prefix}/api/{{version}}", get_resources), (f"{prefix}/apis/{{group}}", get_group),
            (f"{prefix}/apis/{{group}}/{{version}}", get_resources)]
