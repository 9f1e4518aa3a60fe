"""Discovery documents and the OpenAPI stub kubectl reads."""

from __future__ import annotations

import aiohttp

from kubesim.server import SimServer
from tests.kubesim.conftest import call

AGGREGATED = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
              "application/json")


async def test_version(sim: SimServer, http: aiohttp.ClientSession) -> None:
    _, body = await call(http, "GET", sim.url + "/version")
    assert body["major"] == "1" and body["gitVersion"].startswith("v1.32")


async def test_aggregated_request_gets_legacy_documents(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    for path, kind in (("/api", "APIVersions"), ("/apis", "APIGroupList")):
        async with http.get(sim.url + path, headers={"Accept": AGGREGATED}) as resp:
            assert resp.headers["Content-Type"] == "application/json"
            body = await resp.json()
        assert body["kind"] == kind
    groups = {g["name"]: g["preferredVersion"]["version"] for g in body["groups"]}
    assert groups["apps"] == "v1" and groups["coordination.k8s.io"] == "v1"


async def test_resource_lists(sim: SimServer, http: aiohttp.ClientSession) -> None:
    _, core = await call(http, "GET", sim.url + "/api/v1")
    pods = next(r for r in core["resources"] if r["name"] == "pods")
    assert pods == {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
                    "verbs": ["create", "delete", "deletecollection", "get", "list", "patch",
                              "update", "watch"],
                    "shortNames": ["po"], "categories": ["all"]}
    assert any(r["name"] == "pods/status" for r in core["resources"])
    _, apps = await call(http, "GET", sim.url + "/apis/apps/v1")
    assert {r["name"] for r in apps["resources"] if "/" not in r["name"]} == {
        "deployments", "replicasets", "statefulsets", "daemonsets"}
    _, batch = await call(http, "GET", sim.url + "/apis/batch")
    assert batch["kind"] == "APIGroup" and batch["preferredVersion"]["version"] == "v1"
    status, _ = await call(http, "GET", sim.url + "/apis/nothing.example.com/v1")
    assert status == 404


async def test_openapi_v3_declares_field_validation(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    _, root = await call(http, "GET", sim.url + "/openapi/v3")
    url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
    _, doc = await call(http, "GET", sim.url + url)
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    assert {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}} in patch[
        "parameters"]
    status, swagger = await call(http, "GET", sim.url + "/openapi/v2")
    assert (status, swagger["swagger"], swagger["definitions"]) == (200, "2.0", {})


async def test_openapi_v2_answers_kubectl_in_protobuf(sim: SimServer, http: aiohttp.ClientSession) -> None:
    # kubectl asks in protobuf and parses the answer's media type with Go's mime parser.
    accept = {"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"}
    async with http.get(sim.url + "/openapi/v2", headers=accept) as resp:
        assert resp.headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        body = await resp.read()
    assert body == b"\x0a\x032.0\x12\x15\x0a\x0aKubernetes\x12\x07v1.32.0"
