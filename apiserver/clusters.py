"""``GET /clusters``: the member clusters a caller may read, and whether their data is current.

What ``kubepedia kubeconfig`` makes a context of, and what dashboards list first.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from apiserver.keys import CATALOG, scope_of


async def list_clusters(request: web.Request) -> web.Response:
    catalog = await request.app[CATALOG].get()
    scope = scope_of(request)
    items = [{"name": c.name, "stale": c.stale, "message": c.message,
              "dataAgeSeconds": None if c.age_seconds is None else round(c.age_seconds, 1)}
             for name, c in sorted(catalog.clusters.items()) if scope.allows_cluster(name)]
    return web.Response(body=orjson.dumps({"kind": "ClusterList", "apiVersion": "kubepedia.io/v1",
                                           "items": items}), content_type="application/json")
