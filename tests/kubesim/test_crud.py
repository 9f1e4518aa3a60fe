"""Create, read, update, patch and delete semantics, checked over HTTP."""

from __future__ import annotations

import aiohttp
import orjson

from kubesim.server import SimServer
from tests.kubesim.conftest import call, pod_body, watch_lines

PODS = "/api/v1/namespaces/default/pods"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"


def deployment(name: str, image: str = "nginx:1.25") -> dict:  # type: ignore[type-arg]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": image},
                                                      {"name": "side", "image": "busybox"}]}}},
    }


async def test_create_assigns_identity_from_one_counter(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    start = sim.sim.store.rv
    status, pod = await call(http, "POST", sim.url + PODS, pod_body("a"))
    assert status == 201
    meta = pod["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["resourceVersion"] == str(start + 1)
    _, cm = await call(http, "POST", sim.url + "/api/v1/namespaces/default/configmaps",
                       {"metadata": {"name": "c"}, "data": {"k": "v"}})
    assert cm["metadata"]["resourceVersion"] == str(start + 2)
    assert cm["kind"] == "ConfigMap" and cm["apiVersion"] == "v1"


async def test_errors_are_status_objects(sim: SimServer, http: aiohttp.ClientSession) -> None:
    await call(http, "POST", sim.url + PODS, pod_body("dup"))
    status, body = await call(http, "POST", sim.url + PODS, pod_body("dup"))
    assert (status, body["reason"], body["kind"], body["code"]) == (409, "AlreadyExists", "Status", 409)
    assert body["details"] == {"name": "dup", "kind": "pods"}
    status, body = await call(http, "GET", sim.url + PODS + "/missing")
    assert (status, body["reason"], body["message"]) == (404, "NotFound", 'pods "missing" not found')
    status, body = await call(http, "POST", sim.url + PODS, pod_body("Bad_Name"))
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    status, body = await call(http, "POST", sim.url + PODS, {"metadata": {}, "spec": {}})
    assert status == 422 and "Required value" in body["message"]
    status, body = await call(http, "POST", sim.url + "/api/v1/namespaces/nope/pods", pod_body("x"))
    assert (status, body["message"]) == (404, 'namespaces "nope" not found')
    status, body = await call(http, "GET", sim.url + "/api/v1/frobs")
    assert status == 404 and body["status"] == "Failure"


async def test_update_is_optimistic(sim: SimServer, http: aiohttp.ClientSession) -> None:
    _, pod = await call(http, "POST", sim.url + PODS, pod_body("u"))
    stale = dict(pod)
    pod["metadata"]["labels"] = {"x": "1"}
    status, updated = await call(http, "PUT", sim.url + PODS + "/u", pod)
    assert status == 200
    assert int(updated["metadata"]["resourceVersion"]) > int(stale["metadata"]["resourceVersion"])
    stale["metadata"] = {**stale["metadata"], "labels": {"x": "2"},
                         "resourceVersion": pod["metadata"]["resourceVersion"]}
    status, body = await call(http, "PUT", sim.url + PODS + "/u", stale)
    assert (status, body["reason"]) == (409, "Conflict")
    assert "the object has been modified" in body["message"]


async def test_generation_moves_only_on_spec(sim: SimServer, http: aiohttp.ClientSession) -> None:
    _, created = await call(http, "POST", sim.url + DEPLOYS, deployment("g"))
    assert created["metadata"]["generation"] == 1
    merge = "application/merge-patch+json"
    _, labelled = await call(http, "PATCH", sim.url + DEPLOYS + "/g",
                             {"metadata": {"labels": {"a": "b"}}}, merge)
    assert labelled["metadata"]["generation"] == 1
    _, status_only = await call(http, "PATCH", sim.url + DEPLOYS + "/g/status",
                                {"status": {"readyReplicas": 1}}, merge)
    assert status_only["metadata"]["generation"] == 1
    assert status_only["status"]["readyReplicas"] == 1
    _, scaled = await call(http, "PATCH", sim.url + DEPLOYS + "/g", {"spec": {"replicas": 3}}, merge)
    assert scaled["metadata"]["generation"] == 2
    # The main resource keeps the status; only /status writes it.
    _, ignored = await call(http, "PATCH", sim.url + DEPLOYS + "/g",
                            {"status": {"readyReplicas": 9}}, merge)
    assert ignored["status"]["readyReplicas"] == 1
    assert ignored["metadata"]["resourceVersion"] == scaled["metadata"]["resourceVersion"]


async def test_patch_flavours(sim: SimServer, http: aiohttp.ClientSession) -> None:
    await call(http, "POST", sim.url + DEPLOYS, deployment("p"))
    url = sim.url + DEPLOYS + "/p"
    strategic = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}}
    _, out = await call(http, "PATCH", url, strategic, "application/strategic-merge-patch+json")
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("app", "nginx:2"), ("side", "busybox")]
    _, out = await call(http, "PATCH", url, strategic, "application/merge-patch+json")
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["app"]
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 5},
           {"op": "add", "path": "/metadata/labels", "value": {"k": "v"}}]
    _, out = await call(http, "PATCH", url, ops, "application/json-patch+json")
    assert out["spec"]["replicas"] == 5 and out["metadata"]["labels"] == {"k": "v"}
    status, body = await call(http, "PATCH", url, {}, "application/apply-patch+yaml")
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")


async def test_delete_consumes_a_version_carried_by_the_event(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    _, pod = await call(http, "POST", sim.url + PODS, pod_body("d"))
    created_rv = int(pod["metadata"]["resourceVersion"])
    status, deleted = await call(http, "DELETE", sim.url + PODS + "/d")
    assert status == 200
    assert int(deleted["metadata"]["resourceVersion"]) == created_rv + 1 == sim.sim.store.rv
    events = await watch_lines(http, sim.url + PODS, count=2, resourceVersion=str(created_rv - 1))
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]
    assert events[1]["object"]["metadata"]["resourceVersion"] == str(created_rv + 1)
    status, _ = await call(http, "GET", sim.url + PODS + "/d")
    assert status == 404


async def test_noop_update_writes_nothing(sim: SimServer, http: aiohttp.ClientSession) -> None:
    _, pod = await call(http, "POST", sim.url + PODS, pod_body("n"))
    before = sim.sim.store.rv
    status, same = await call(http, "PUT", sim.url + PODS + "/n", pod)
    assert status == 200 and sim.sim.store.rv == before
    assert same["metadata"]["resourceVersion"] == pod["metadata"]["resourceVersion"]


async def test_namespace_delete_removes_contents(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    status, _ = await call(http, "DELETE", sim.url + "/api/v1/namespaces/ns-000")
    assert status == 200
    assert not [o for o in sim.sim.dump() if o["namespace"] == "ns-000"]


async def test_crd_lifecycle_in_discovery(sim: SimServer, http: aiohttp.ClientSession) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster",
                 "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget",
                           "shortNames": ["gd"]},
                 "versions": [{"name": "v1alpha1", "served": True, "storage": False},
                              {"name": "v2", "served": True, "storage": True}]},
    }
    crds = sim.url + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    assert (await call(http, "POST", crds, crd))[0] == 201
    _, doc = await call(http, "GET", sim.url + "/apis/example.com/v2")
    assert doc["resources"][0] == {"name": "gadgets", "singularName": "gadget",
                                   "namespaced": False, "kind": "Gadget", "verbs": doc[
                                       "resources"][0]["verbs"], "shortNames": ["gd"]}
    gadget = {"apiVersion": "example.com/v2", "kind": "Gadget", "metadata": {"name": "g1"}}
    status, made = await call(http, "POST", sim.url + "/apis/example.com/v2/gadgets", gadget)
    assert status == 201 and made["metadata"]["generation"] == 1
    assert (await call(http, "DELETE", crds + "/gadgets.example.com"))[0] == 200
    status, _ = await call(http, "GET", sim.url + "/apis/example.com/v2")
    assert status == 404
    assert not [o for o in sim.sim.dump() if o["resource"] == "gadgets"]


async def test_status_subresource_keeps_spec(sim: SimServer, http: aiohttp.ClientSession) -> None:
    await call(http, "POST", sim.url + PODS, pod_body("st"))
    patch = {"spec": {"nodeName": "elsewhere"}, "status": {"phase": "Running"},
             "metadata": {"annotations": {"seen": "yes"}}}
    status, pod = await call(http, "PATCH", sim.url + PODS + "/st/status", patch,
                             "application/merge-patch+json")
    assert status == 200
    assert pod["status"]["phase"] == "Running" and "nodeName" not in pod["spec"]
    assert pod["metadata"]["annotations"] == {"seen": "yes"}


async def test_delete_collection_by_selector(sim: SimServer, http: aiohttp.ClientSession) -> None:
    await call(http, "POST", sim.url + PODS, pod_body("c1", {"batch": "1"}))
    await call(http, "POST", sim.url + PODS, pod_body("c2", {"batch": "1"}))
    await call(http, "POST", sim.url + PODS, pod_body("c3", {"batch": "2"}))
    status, body = await call(http, "DELETE", sim.url + PODS, labelSelector="batch=1")
    assert status == 200 and body["kind"] == "PodList"
    assert sorted(i["metadata"]["name"] for i in body["items"]) == ["c1", "c2"]
    _, left = await call(http, "GET", sim.url + PODS)
    assert [i["metadata"]["name"] for i in left["items"]] == ["c3"]


async def test_body_of_another_kind_is_rejected(sim: SimServer, http: aiohttp.ClientSession) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "k"}}
    status, out = await call(http, "POST", sim.url + PODS, body)
    assert (status, out["reason"]) == (400, "BadRequest")
    body = {"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "k"}}
    status, out = await call(http, "POST", sim.url + DEPLOYS, body)
    assert status == 400 and "API version" in out["message"]


async def test_create_body_media_types(sim: SimServer, http: aiohttp.ClientSession) -> None:
    """JSON and YAML bodies create; a body in another format is 415 and creates nothing."""
    configmaps = sim.url + "/api/v1/namespaces/default/configmaps"
    yaml_body = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-yaml}\ndata: {k: v}\n"
    async with http.post(configmaps, data=yaml_body, headers={"Content-Type": "application/yaml"}) as resp:
        assert resp.status == 201
        assert orjson.loads(await resp.read())["data"] == {"k": "v"}
    proto = b"k8s\x00\n\x0f\n\x02v1\x12\tConfigMap"
    headers = {"Content-Type": "application/vnd.kubernetes.protobuf"}
    async with http.post(configmaps, data=proto, headers=headers) as resp:
        body = orjson.loads(await resp.read())
        assert (resp.status, body["reason"]) == (415, "UnsupportedMediaType")
        assert "application/json, application/yaml" in body["message"]
    bad_yaml = b"metadata: ["
    async with http.post(configmaps, data=bad_yaml, headers={"Content-Type": "application/yaml"}) as resp:
        body = orjson.loads(await resp.read())
        assert (resp.status, body["reason"]) == (400, "BadRequest") and "not valid YAML" in body["message"]
    _, listed = await call(http, "GET", configmaps)
    assert [c["metadata"]["name"] for c in listed["items"]] == ["from-yaml"]
