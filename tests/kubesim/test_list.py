"""LIST: the resourceVersion table, paging with continue, selectors, tables.

https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-get-and-list
"""

from __future__ import annotations

import asyncio

import aiohttp

from kubesim.server import SimServer, running
from tests.kubesim.conftest import call, fast_config, pod_body

PODS = "/api/v1/pods"
DEFAULT_PODS = "/api/v1/namespaces/default/pods"
MERGE = "application/merge-patch+json"


def names(body: dict) -> list[str]:  # type: ignore[type-arg]
    return [i["metadata"]["name"] for i in body["items"]]


async def test_unset_and_zero_serve_the_latest(sim: SimServer, http: aiohttp.ClientSession) -> None:
    for params in ({}, {"resourceVersion": "0"}):
        status, body = await call(http, "GET", sim.url + PODS, **params)
        assert status == 200
        assert body["kind"] == "PodList" and body["apiVersion"] == "v1"
        assert body["metadata"]["resourceVersion"] == str(sim.sim.store.rv)
        assert len(body["items"]) == 12


async def test_not_older_than_and_too_large(sim: SimServer, http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", sim.url + PODS, resourceVersion="1",
                              resourceVersionMatch="NotOlderThan")
    assert status == 200 and body["metadata"]["resourceVersion"] == str(sim.sim.store.rv)
    future = sim.sim.store.rv + 100
    for match in ("NotOlderThan", "Exact"):
        status, body = await call(http, "GET", sim.url + PODS, resourceVersion=str(future),
                                  resourceVersionMatch=match)
        assert (status, body["reason"], body["code"]) == (504, "Timeout", 504)
        assert body["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
        assert body["message"].startswith(f"Too large resource version: {future}")


async def test_future_version_is_served_once_reached(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    target = sim.sim.store.rv + 1

    async def write_soon() -> None:
        await asyncio.sleep(0.1)
        await call(http, "POST", sim.url + DEFAULT_PODS, pod_body("late"))

    writer = asyncio.create_task(write_soon())
    status, body = await call(http, "GET", sim.url + PODS, resourceVersion=str(target),
                              resourceVersionMatch="NotOlderThan")
    await writer
    assert status == 200 and "late" in names(body)


async def test_exact_reconstructs_an_older_state(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    _, first = await call(http, "POST", sim.url + DEFAULT_PODS, pod_body("keep", {"v": "1"}))
    await call(http, "POST", sim.url + DEFAULT_PODS, pod_body("gone"))
    _, snap = await call(http, "GET", sim.url + DEFAULT_PODS)
    at = snap["metadata"]["resourceVersion"]
    await call(http, "PATCH", sim.url + DEFAULT_PODS + "/keep", {"metadata": {"labels": {"v": "2"}}},
               MERGE)
    await call(http, "DELETE", sim.url + DEFAULT_PODS + "/gone")
    await call(http, "POST", sim.url + DEFAULT_PODS, pod_body("new"))
    for params in ({"resourceVersionMatch": "Exact"}, {"limit": "50"}):
        status, body = await call(http, "GET", sim.url + DEFAULT_PODS, resourceVersion=at, **params)
        assert status == 200
        assert body["metadata"]["resourceVersion"] == at
        assert names(body) == ["gone", "keep"]
        assert body["items"][1]["metadata"]["labels"] == {"v": "1"}
    _, now = await call(http, "GET", sim.url + DEFAULT_PODS, resourceVersion=at)
    assert names(now) == ["keep", "new"]
    assert first["metadata"]["uid"] == now["items"][0]["metadata"]["uid"]


async def test_exact_below_history_is_expired(sim: SimServer, http: aiohttp.ClientSession) -> None:
    _, body = await call(http, "GET", sim.url + PODS)
    await call(http, "POST", sim.url + DEFAULT_PODS, pod_body("after"))
    await call(http, "POST", sim.url + "/_kubesim/compact")
    status, body = await call(http, "GET", sim.url + PODS,
                              resourceVersion=body["metadata"]["resourceVersion"],
                              resourceVersionMatch="Exact")
    assert (status, body["reason"], body["code"]) == (410, "Expired", 410)
    assert body["message"] == "The resourceVersion for the provided list is too old."


async def test_invalid_list_options(sim: SimServer, http: aiohttp.ClientSession) -> None:
    cases = [
        ({"resourceVersionMatch": "NotOlderThan"}, "resourceVersionMatch is forbidden unless"),
        ({"resourceVersion": "0", "resourceVersionMatch": "Exact"}, 'forbidden for resourceVersion "0"'),
        ({"resourceVersion": "5", "resourceVersionMatch": "Newest"}, "Unsupported value"),
        ({"sendInitialEvents": "true"}, "sendInitialEvents is forbidden for list"),
    ]
    for params, text in cases:
        status, body = await call(http, "GET", sim.url + PODS, **params)
        assert (status, body["reason"]) == (422, "Invalid"), params
        assert text in body["message"]
    status, body = await call(http, "GET", sim.url + PODS, resourceVersion="abc")
    assert status == 400


async def test_pages_are_a_consistent_snapshot(sim: SimServer, http: aiohttp.ClientSession) -> None:
    status, page1 = await call(http, "GET", sim.url + PODS, limit=5)
    assert status == 200 and len(page1["items"]) == 5
    assert page1["metadata"]["remainingItemCount"] == 7
    _, full = await call(http, "GET", sim.url + PODS)
    expected = names(full)
    # Change the rest of the list between pages: a patch, a delete, a create.
    target = full["items"][7]["metadata"]
    gone = full["items"][11]["metadata"]
    ns_pods = f"/api/v1/namespaces/{target['namespace']}/pods/"
    await call(http, "PATCH", sim.url + ns_pods + target["name"],
               {"metadata": {"labels": {"changed": "yes"}}}, MERGE)
    await call(http, "DELETE", sim.url + f"/api/v1/namespaces/{gone['namespace']}/pods/{gone['name']}")
    await call(http, "POST", sim.url + "/api/v1/namespaces/ns-001/pods", pod_body("zzz-late"))
    token = page1["metadata"]["continue"]
    _, page2 = await call(http, "GET", sim.url + PODS, limit=5, **{"continue": token})
    _, page3 = await call(http, "GET", sim.url + PODS, limit=5,
                          **{"continue": page2["metadata"]["continue"]})
    assert page2["metadata"]["resourceVersion"] == page1["metadata"]["resourceVersion"]
    assert page2["metadata"]["remainingItemCount"] == 2
    assert "continue" not in page3["metadata"] and "remainingItemCount" not in page3["metadata"]
    assert names(page1) + names(page2) + names(page3) == expected
    assert "changed" not in page2["items"][2]["metadata"]["labels"]


async def test_continue_after_compaction_is_expired_with_a_fresh_token(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    _, page1 = await call(http, "GET", sim.url + PODS, limit=5)
    await call(http, "POST", sim.url + DEFAULT_PODS, pod_body("between"))
    await call(http, "POST", sim.url + "/_kubesim/compact")
    status, body = await call(http, "GET", sim.url + PODS, limit=5,
                              **{"continue": page1["metadata"]["continue"]})
    assert (status, body["reason"], body["code"]) == (410, "Expired", 410)
    assert body["message"].startswith("The provided continue parameter is too old")
    fresh = body["metadata"]["continue"]
    status, rest = await call(http, "GET", sim.url + PODS, limit=50, **{"continue": fresh})
    assert status == 200 and len(rest["items"]) == 7


async def test_continue_tokens_expire(http: aiohttp.ClientSession) -> None:
    async with running(generate={"pods": 6}, config=fast_config(continue_ttl=0.1)) as server:
        _, page1 = await call(http, "GET", server.url + PODS, limit=2)
        await asyncio.sleep(0.15)
        status, body = await call(http, "GET", server.url + PODS, limit=2,
                                  **{"continue": page1["metadata"]["continue"]})
        assert (status, body["reason"]) == (410, "Expired")


async def test_continue_rejects_resource_version_and_garbage(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    _, page1 = await call(http, "GET", sim.url + PODS, limit=5)
    status, body = await call(http, "GET", sim.url + PODS, limit=5, resourceVersion="3",
                              **{"continue": page1["metadata"]["continue"]})
    assert status == 400 and "not allowed when using continue" in body["message"]
    status, body = await call(http, "GET", sim.url + PODS, limit=5, **{"continue": "%%%"})
    assert (status, body["reason"]) == (400, "BadRequest")


async def test_label_selectors(sim: SimServer, http: aiohttp.ClientSession) -> None:
    url = sim.url + DEFAULT_PODS
    await call(http, "POST", url, pod_body("a", {"app": "x", "tier": "web"}))
    await call(http, "POST", url, pod_body("b", {"app": "y"}))
    await call(http, "POST", url, pod_body("c", {"app": "z", "tier": "db"}))
    cases = {
        "app=x": ["a"], "app==y": ["b"], "app!=x": ["b", "c"], "app in (x, z)": ["a", "c"],
        "app notin (x,z)": ["b"], "tier": ["a", "c"], "!tier": ["b"], "app,tier=db": ["c"],
    }
    for selector, expected in cases.items():
        _, body = await call(http, "GET", url, labelSelector=selector)
        assert names(body) == expected, selector


async def test_field_selectors(sim: SimServer, http: aiohttp.ClientSession) -> None:
    url = sim.url + DEFAULT_PODS
    await call(http, "POST", url, pod_body("on-a", node="node-a"))
    await call(http, "POST", url, pod_body("on-b", node="node-b"))
    _, body = await call(http, "GET", url, fieldSelector="spec.nodeName=node-a")
    assert names(body) == ["on-a"]
    _, body = await call(http, "GET", url, fieldSelector="metadata.name!=on-a,status.phase=Pending")
    assert names(body) == ["on-b"]
    _, body = await call(http, "GET", sim.url + PODS, fieldSelector="metadata.namespace==default")
    assert names(body) == ["on-a", "on-b"]
    status, body = await call(http, "GET", url, fieldSelector="spec.foo=bar")
    assert (status, body["reason"]) == (400, "BadRequest")
    assert body["message"] == "field label not supported: spec.foo"


async def test_selector_pages_have_no_remaining_count(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    _, body = await call(http, "GET", sim.url + PODS, limit=2, labelSelector="app")
    assert body["metadata"]["continue"] and "remainingItemCount" not in body["metadata"]


async def test_table_output(sim: SimServer, http: aiohttp.ClientSession) -> None:
    accept = ("application/json;as=Table;v=v1beta1;g=meta.k8s.io;q=0.5,"
              "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;q=0.9")
    async with http.get(sim.url + PODS, headers={"Accept": accept}, params={"limit": "3"}) as resp:
        table = await resp.json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    columns = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert columns == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert len(table["rows"]) == 3 and table["metadata"]["continue"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    params = {"includeObject": "None"}
    async with http.get(sim.url + "/apis/apps/v1/deployments", headers={"Accept": accept},
                        params=params) as resp:
        table = await resp.json()
    assert [c["name"] for c in table["columnDefinitions"]][:5] == [
        "Name", "Ready", "Up-to-date", "Available", "Age"]
    assert "object" not in table["rows"][0]
    async with http.get(sim.url + "/api/v1/serviceaccounts",
                        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
                        params={"includeObject": "Object"}) as resp:
        table = await resp.json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]


async def test_partial_object_metadata(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """What client-go's metadata informers ask for."""
    list_accept = ("application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;"
                   "g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;"
                   "g=meta.k8s.io;v=v1,application/json")
    async with http.get(sim.url + PODS, headers={"Accept": list_accept},
                        params={"limit": "4"}) as resp:
        body = await resp.json()
    assert body["kind"] == "PartialObjectMetadataList"
    assert body["apiVersion"] == "meta.k8s.io/v1"
    assert body["metadata"]["continue"] and len(body["items"]) == 4
    item = body["items"][0]
    assert item["kind"] == "PartialObjectMetadata" and set(item) == {"kind", "apiVersion",
                                                                       "metadata"}
    assert item["metadata"]["uid"]
    one_accept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
    name, ns = item["metadata"]["name"], item["metadata"]["namespace"]
    async with http.get(sim.url + f"/api/v1/namespaces/{ns}/pods/{name}",
                        headers={"Accept": one_accept}) as resp:
        one = await resp.json()
    assert one == item
