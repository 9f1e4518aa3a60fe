"""A minimal OpenAPI v3 so that kubectl's default validation works.

kubectl 1.32 validates with ``--validate=strict`` by default: it reads
``/openapi/v3`` to learn whether the server supports the ``fieldValidation``
query parameter on PATCH for the object's GroupVersionKind, and if so leaves
validation to the server instead of downloading full schemas
(k8s.io/cli-runtime resource/query_param_verifier_v3.go). So each group
version document lists, per resource, a PATCH operation tagged with
``x-kubernetes-group-version-kind`` that declares ``fieldValidation``. No
schemas are served: ``kubectl explain`` is not supported.

``/openapi/v2`` is a valid document without definitions. kubectl reads it (as protobuf)
when the v3 documents do not list a kind, to validate on the client
(k8s.io/kubectl/pkg/validation/schema.go); a kind it has no schema for is not validated
there, and kubectl goes on to refuse it as kube-apiserver's discovery leads it to: "no
matches for kind". Without that document kubectl would stop at "failed to download
openapi". kubectl apply, finding no schema in either document, computes strategic merge
patches from its compiled-in types.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from aiohttp import web

from kube.resources import ResourceType
from kubesim.handlers import json_response, not_found_path
from kubesim.simulator import Simulator

JSON = dict[str, Any]


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _operation(rtype: ResourceType) -> JSON:
    return {
        "x-kubernetes-group-version-kind": {
            "group": rtype.group, "version": rtype.version, "kind": rtype.kind,
        },
        "parameters": [
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
        ],
        "responses": {"200": {"description": "OK"}},
    }


def group_version_doc(types: list[ResourceType]) -> JSON:
    paths: JSON = {}
    for rtype in types:
        scope = "/namespaces/{namespace}" if rtype.namespaced else ""
        path = f"/{_gv_path(rtype.group, rtype.version)}{scope}/{rtype.resource}/{{name}}"
        paths[path] = {"patch": _operation(rtype)}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def _by_group_version(sim: Simulator) -> dict[str, list[ResourceType]]:
    out: dict[str, list[ResourceType]] = {}
    for rtype in sim.registry.all():
        out.setdefault(_gv_path(rtype.group, rtype.version), []).append(rtype)
    return out


def openapi_routes(sim: Simulator) -> list[web.RouteDef]:
    async def root(request: web.Request) -> web.Response:
        paths: JSON = {}
        for gv, types in _by_group_version(sim).items():
            digest = hashlib.sha256(orjson.dumps(group_version_doc(types))).hexdigest()[:32]
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest.upper()}"}
        return json_response(orjson.dumps({"paths": paths}))

    async def document(request: web.Request) -> web.Response:
        types = _by_group_version(sim).get(request.match_info["gv"])
        if not types:
            raise not_found_path()
        return json_response(orjson.dumps(group_version_doc(types)))

    return [web.get("/openapi/v2", swagger), web.get("/openapi/v3", root),
            web.get("/openapi/v3/{gv:.+}", document)]


# Asked for as ``...spec.v2@v1.0+protobuf``; answered as kube-openapi does, with a media type
# that Go's mime parser accepts (client-go parses the response's).
PROTOBUF_V2 = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
SWAGGER: JSON = {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
                 "paths": {}, "definitions": {}}


def _proto_string(field: int, value: bytes) -> bytes:
    """A length-delimited protobuf field (every value here is shorter than 128 bytes)."""
    return bytes([field << 3 | 2, len(value)]) + value


def swagger_protobuf() -> bytes:
    """``SWAGGER`` as gnostic's ``openapi_v2.Document``: swagger (1) and info (2: title 1,
    version 2); empty paths and definitions are absent fields."""
    info = SWAGGER["info"]
    encoded_info = _proto_string(1, info["title"].encode()) + _proto_string(2, info["version"].encode())
    return _proto_string(1, SWAGGER["swagger"].encode()) + _proto_string(2, encoded_info)


async def swagger(request: web.Request) -> web.Response:
    if "protobuf" in request.headers.get("Accept", ""):
        return web.Response(body=swagger_protobuf(), headers={"Content-Type": PROTOBUF_V2})
    return json_response(orjson.dumps(SWAGGER))
