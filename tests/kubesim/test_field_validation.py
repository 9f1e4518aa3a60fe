"""Server-side field validation and dry runs, as kube-apiserver answers them, and the types
deploy/ needs in discovery."""

from __future__ import annotations

import aiohttp

from kubesim.server import SimServer
from tests.kubesim.conftest import call

CM_URL = "/api/v1/namespaces/ns-000/configmaps"


def _config_map(name: str, **extra: object) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "b"}, **extra}


def _deployment(container: dict[str, object]) -> dict[str, object]:
    labels = {"app": "x"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}


async def test_strict_refuses_unknown_fields_by_path(sim: SimServer, http: aiohttp.ClientSession) -> None:
    body = _deployment({"name": "a", "image": "b", "imagePolicy": "x"})
    body["spek"] = {}
    status, answer = await call(http, "POST", sim.url + "/apis/apps/v1/namespaces/ns-000/deployments", body,
                                fieldValidation="Strict")
    assert (status, answer["reason"], answer["code"]) == (400, "BadRequest", 400)
    assert answer["message"] == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.template.spec.containers[0].imagePolicy", unknown field "spek"')
    status, _ = await call(http, "GET", sim.url + "/apis/apps/v1/namespaces/ns-000/deployments/x")
    assert status == 404


async def test_known_fields_pass_strict(sim: SimServer, http: aiohttp.ClientSession) -> None:
    body = _deployment({"name": "a", "image": "b", "resources": {"limits": {"memory": "1Gi"}},
                        "securityContext": {"capabilities": {"drop": ["ALL"]}}})
    body["metadata"] = {"name": "x", "labels": {"anything": "goes"}, "annotations": {"a": "b"}}
    status, answer = await call(http, "POST", sim.url + "/apis/apps/v1/namespaces/ns-000/deployments", body,
                                fieldValidation="Strict")
    assert status == 201, answer


async def test_warn_writes_and_warns_ignore_is_silent(sim: SimServer, http: aiohttp.ClientSession) -> None:
    headers = {"Content-Type": "application/json"}
    url = sim.url + CM_URL
    async with http.post(url, json=_config_map("warned", extra=1), headers=headers,
                         params={"fieldValidation": "Warn"}) as resp:
        assert resp.status == 201
        assert resp.headers.getall("Warning") == ['299 - "unknown field \\"extra\\""']
    async with http.post(url, json=_config_map("ignored", extra=1), headers=headers,
                         params={"fieldValidation": "Ignore"}) as resp:
        assert resp.status == 201
        assert "Warning" not in resp.headers


async def test_unsupported_directive_is_invalid_options(sim: SimServer, http: aiohttp.ClientSession) -> None:
    status, answer = await call(http, "POST", sim.url + CM_URL, _config_map("c"), fieldValidation="strict")
    assert (status, answer["reason"]) == (422, "Invalid")
    assert answer["message"] == ('CreateOptions.meta.k8s.io "" is invalid: fieldValidation: '
                                 'Unsupported value: '
                                 '"strict": supported values: "Ignore", "Strict", "Warn"')


async def test_strict_patch_checks_the_patched_object(sim: SimServer, http: aiohttp.ClientSession) -> None:
    assert (await call(http, "POST", sim.url + CM_URL, _config_map("p")))[0] == 201
    status, answer = await call(http, "PATCH", sim.url + CM_URL + "/p", {"extra": 1},
                                "application/merge-patch+json", fieldValidation="Strict")
    assert (status, answer["message"]) == (400, 'strict decoding error: unknown field "extra"')
    _, kept = await call(http, "GET", sim.url + CM_URL + "/p")
    assert "extra" not in kept


async def test_dry_run_create_answers_the_object_and_stores_nothing(
    sim: SimServer, http: aiohttp.ClientSession,
) -> None:
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "api"},
           "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "api"}}}}
    url = sim.url + "/apis/policy/v1/namespaces/ns-000/poddisruptionbudgets"
    status, answer = await call(http, "POST", url, pdb, dryRun="All", fieldValidation="Strict")
    assert status == 201
    assert answer["metadata"]["uid"] and answer["spec"]["minAvailable"] == 1
    assert (await call(http, "GET", url + "/api"))[0] == 404


async def test_deploy_types_are_served_as_kube_apiserver_lists_them(
    sim: SimServer, http: aiohttp.ClientSession,
) -> None:
    expected = {
        "/apis/rbac.authorization.k8s.io/v1": {"clusterroles": False, "clusterrolebindings": False,
                                               "roles": True, "rolebindings": True},
        "/apis/policy/v1": {"poddisruptionbudgets": True, "poddisruptionbudgets/status": True},
        "/apis/apiregistration.k8s.io/v1": {"apiservices": False, "apiservices/status": False},
        "/apis/networking.k8s.io/v1": {"networkpolicies": True, "ingresses": True, "ingresses/status": True},
    }
    for path, resources in expected.items():
        _, listing = await call(http, "GET", sim.url + path)
        served = {r["name"]: r["namespaced"] for r in listing["resources"]}
        assert served == resources
    _, policy = await call(http, "GET", sim.url + "/apis/policy/v1")
    pdb = next(r for r in policy["resources"] if r["name"] == "poddisruptionbudgets")
    assert pdb["shortNames"] == ["pdb"]
    assert sorted(pdb["verbs"]) == ["create", "delete", "deletecollection", "get", "list", "patch",
                                    "update", "watch"]
