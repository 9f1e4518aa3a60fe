"""``GET /kubepedia/v1/openapi.json``: the OpenAPI 3.1 document of the read API's own paths.

It describes what the Kubernetes API reference does not: ``/clusters``, history, reports,
health, this path, and the Clusterpedia-compatible search and collection paths under
``/apis/clusterpedia.io/v1beta1/``. Kubernetes' own paths are left to Kubernetes' documents
(kubectl reads them through discovery, not OpenAPI).

The document is a file packaged with the code (``apiserver/openapi.json``, package data in
pyproject) and served as it is written: ``tests/apiserver/test_openapi.py`` holds it to the
application's routes in both directions, so a path added or removed without it fails there.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

PATH = "/kubepedia/v1/openapi.json"
DOCUMENT = "openapi.json"


@cache
def document() -> bytes:
    """The document's bytes, read once (importlib.resources: from a wheel or a checkout alike)."""
    return resources.files("apiserver").joinpath(DOCUMENT).read_bytes()


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=document(), content_type="application/json")


def openapi_routes() -> list[tuple[str, Any]]:
    """(path, handler) pairs: the document."""
    return [(PATH, get_openapi)]
