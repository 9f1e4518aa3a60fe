"""Discovery, legacy and aggregated: all clusters merged, or what one cluster serves; an
unknown cluster is a 404 ``Status`` on every path beneath it."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from apiserver.app import build_app
from apiserver.query import Scope
from kube.resources import ResourceType
from syncer.ingest import Store
from tests.access import granted
from tests.apiserver.conftest import Api, fill, serving

JOBS = ResourceType(group="batch", version="v1", resource="jobs", kind="Job", namespaced=True)
WIDGETS_V1 = ResourceType(group="example.com", version="v1", resource="widgets", kind="Widget",
                          namespaced=True)
WIDGETS_V2 = ResourceType(group="example.com", version="v2", resource="widgets", kind="Widget",
                          namespaced=True)
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v={};as=APIGroupDiscoveryList,application/json"


def _object(rtype: ResourceType, name: str) -> dict[str, Any]:
    return {"apiVersion": rtype.api_version, "kind": rtype.kind,
            "metadata": {"name": name, "namespace": "default", "uid": f"{rtype.resource}-{name}",
                         "resourceVersion": "3", "creationTimestamp": "2026-01-02T03:04:05Z"}}


@pytest.fixture
async def fleet(pool: asyncpg.Pool) -> None:
    """Every cluster: pods, deployments, nodes. Besides: jobs in west only; widgets at v1 in
    east and at v2 in west."""
    await fill(pool, pods_per_namespace=2)
    store = Store(pool)
    for cluster, rtype in (("west", JOBS), ("east", WIDGETS_V1), ("west", WIDGETS_V2)):
        async with store.snapshot(cluster=cluster, rtype=rtype) as snap:
            await snap.add([_object(rtype, "one")])
            await snap.end("5")


def _groups(body: dict[str, Any]) -> dict[str, list[str]]:
    """Legacy APIGroupList: each group's versions."""
    return {g["name"]: [v["version"] for v in g["versions"]] for g in body["groups"]}


def _aggregated(body: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """APIGroupDiscoveryList: each group's versions and their resources."""
    return {item["metadata"]["name"]: {v["version"]: [r["resource"] for r in v["resources"]]
                                       for v in item["versions"]} for item in body["items"]}


async def test_legacy_discovery_of_one_cluster_lists_only_what_it_serves(api: Api, fleet: None) -> None:
    _, merged = await api.get("/apis")
    assert _groups(merged) == {"apps": ["v1"], "batch": ["v1"], "example.com": ["v2", "v1"],
                               "clusterpedia.io": ["v1beta1"]}  # kubepedia's own (collections)
    _, east = await api.get("/clusters/east/apis")
    assert _groups(east) == {"apps": ["v1"], "example.com": ["v1"]}
    _, west = await api.get("/clusters/west/apis")
    assert _groups(west) == {"apps": ["v1"], "batch": ["v1"], "example.com": ["v2"]}
    status, group = await api.get("/clusters/east/apis/example.com")
    assert status == 200 and group["preferredVersion"]["version"] == "v1"
    assert [v["version"] for v in group["versions"]] == ["v1"]
    status, body = await api.get("/clusters/west/apis/batch/v1")
    assert status == 200 and [r["name"] for r in body["resources"]] == ["jobs"]
    for path in ("/clusters/east/apis/batch", "/clusters/east/apis/batch/v1",
                 "/clusters/west/apis/example.com/v1"):
        status, body = await api.get(path)
        assert (status, body["kind"], body["reason"]) == (404, "Status", "NotFound"), path
    status, body = await api.get("/clusters/edge/api/v1")
    assert status == 200 and sorted(r["name"] for r in body["resources"]) == ["nodes", "pods"]


@pytest.mark.parametrize("version", ["v2", "v2beta1"])
async def test_aggregated_discovery_of_one_cluster_lists_only_what_it_serves(api: Api, fleet: None,
                                                                             version: str) -> None:
    headers = {"Accept": AGGREGATED.format(version)}
    _, merged, _ = await api.request("GET", "/apis", headers=headers)
    assert _aggregated(merged)["example.com"] == {"v2": ["widgets"], "v1": ["widgets"]}
    status, east, resp = await api.request("GET", "/clusters/east/apis", headers=headers)
    assert status == 200 and f"v={version}" in resp.headers["Content-Type"]
    assert _aggregated(east) == {"apps": {"v1": ["deployments"]}, "example.com": {"v1": ["widgets"]}}
    _, west, _ = await api.request("GET", "/clusters/west/apis", headers=headers)
    assert _aggregated(west) == {"apps": {"v1": ["deployments"]}, "batch": {"v1": ["jobs"]},
                                 "example.com": {"v2": ["widgets"]}}
    _, core, _ = await api.request("GET", "/clusters/west/api", headers=headers)
    assert _aggregated(core) == {"": {"v1": ["nodes", "pods"]}}


async def test_objects_of_a_type_the_cluster_does_not_serve_are_not_found(api: Api, fleet: None) -> None:
    status, body = await api.get("/apis/batch/v1/jobs")
    assert status == 200 and len(body["items"]) == 1
    status, body = await api.get("/clusters/west/apis/batch/v1/jobs")
    assert status == 200 and len(body["items"]) == 1
    for path, params in (("/clusters/east/apis/batch/v1/jobs", {}),
                         ("/clusters/east/apis/batch/v1/namespaces/default/jobs/one", {}),
                         ("/clusters/east/apis/batch/v1/jobs", {"watch": "1"}),
                         ("/clusters/east/apis/example.com/v2/widgets", {})):
        status, body = await api.get(path, **params)
        assert (status, body["kind"], body["reason"]) == (404, "Status", "NotFound"), path


@pytest.mark.parametrize(("path", "params", "accept"), [
    ("/clusters/nowhere/version", {}, ""),
    ("/clusters/nowhere/api", {}, ""),
    ("/clusters/nowhere/api", {}, AGGREGATED.format("v2")),
    ("/clusters/nowhere/apis", {}, ""),
    ("/clusters/nowhere/apis", {}, AGGREGATED.format("v2beta1")),
    ("/clusters/nowhere/api/v1", {}, ""),
    ("/clusters/nowhere/apis/apps", {}, ""),
    ("/clusters/nowhere/apis/apps/v1", {}, ""),
    ("/clusters/nowhere/api/v1/pods", {}, ""),
    ("/clusters/nowhere/api/v1/namespaces/web/pods", {"limit": "2"}, ""),
    ("/clusters/nowhere/api/v1/namespaces/web/pods/web-000", {}, ""),
    ("/clusters/nowhere/api/v1/nodes", {"watch": "1"}, ""),
    ("/clusters/nowhere/apis/apps/v1/deployments", {"watch": "1", "resourceVersion": "0"}, ""),
    ("/clusters/nowhere/apis/unknown.example/v1/things", {}, ""),
])
async def test_an_unknown_cluster_is_not_found_everywhere(api: Api, fleet: None, path: str,
                                                         params: dict[str, str], accept: str) -> None:
    headers = {"Accept": accept} if accept else {}
    status, body, _ = await api.request("GET", path, params=params, headers=headers)
    assert status == 404, body
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "NotFound", 404)
    assert body["message"] == 'cluster "nowhere" not found'


async def test_a_cluster_outside_the_callers_scope_is_not_found(db_url: str, fleet: None) -> None:
    app = build_app(database_url=db_url, access=granted(Scope.of(clusters={"east"})))
    async with serving(app) as scoped:
        assert (await scoped.get("/clusters/east/apis"))[0] == 200
        for path in ("/clusters/west/apis", "/clusters/west/api/v1/pods"):
            status, body = await scoped.get(path)
            assert (status, body["message"]) == (404, 'cluster "west" not found'), path
