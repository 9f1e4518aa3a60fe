"""What one request may see of the catalog: everything, or under ``/clusters/{cluster}`` the
types that cluster serves.

A cluster that is not registered (or that the caller's scope leaves out) is answered with
a 404 ``Status`` on every path beneath it, discovery included, never with an empty answer
that reads as "this cluster has nothing".
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from apiserver.catalog import Catalog
from apiserver.keys import CATALOG, scope_of
from kube.status import StatusError


def cluster_not_found(cluster: str) -> StatusError:
    return StatusError(404, "NotFound", f'cluster "{cluster}" not found',
                       {"name": cluster, "group": "kubepedia.io", "kind": "clusters"})


def warn(response: web.StreamResponse, lines: Iterable[str]) -> None:
    """A ``Warning`` header per line: RFC 7234 warn-code 299, what kube-apiserver sends and
    kubectl prints."""
    for line in lines:
        response.headers.add("Warning", '299 - "' + line.replace('"', "'") + '"')


async def served_catalog(request: web.Request) -> Catalog:
    """The catalog as the request's path sees it, or a 404 for an unknown cluster."""
    catalog = await request.app[CATALOG].get()
    cluster = request.match_info.get("cluster")
    if cluster is None:
        return catalog
    if cluster not in catalog.clusters or not scope_of(request).allows_cluster(cluster):
        raise cluster_not_found(cluster)
    return catalog.of_cluster(cluster)
