"""kubectl and the kubernetes Python client against kubepedia, fed by kubesim clusters.

Two kubesim clusters (one with a CRD and its objects) are synced into the store by the
same informers pull mode runs; the read API serves them; real kubectl binaries (the
default one, and the oldest and newest other versions the machine has) and the official
Python client are the independent clients.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
import yaml

from kubesim.server import SimServer
from tests.apiserver.fleet import Fleet, simulated, synced

GCLOUD_BIN = Path("/usr/lib/google-cloud-sdk/bin")
KUBECTLS = [k for k in ("kubectl", str(GCLOUD_BIN / "kubectl.1.27"), str(GCLOUD_BIN / "kubectl.1.33"))
            if shutil.which(k)]
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "shortNames": ["gd"]},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "additionalPrinterColumns": [
                               {"name": "Color", "type": "string", "jsonPath": ".spec.color"}]}]},
}


async def kubectl(fleet: Fleet, *args: str, binary: str = "kubectl") -> str:
    result = await asyncio.to_thread(subprocess.run, [binary, "--kubeconfig", str(fleet.kubeconfig), *args],
                                     capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def _gadgets(sim: SimServer) -> None:
    """The CRD and two of its objects, before the cluster is synced."""
    async with aiohttp.ClientSession() as session:
        async with session.post(sim.url + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                json=CRD) as resp:
            assert resp.status == 201
        for i, color in enumerate(("red", "blue")):
            gadget = {"apiVersion": "example.com/v1", "kind": "Gadget", "spec": {"color": color},
                      "metadata": {"name": f"g{i}", "namespace": "default"}}
            async with session.post(sim.url + "/apis/example.com/v1/namespaces/default/gadgets",
                                    json=gadget) as resp:
                assert resp.status == 201


@pytest_asyncio.fixture
async def fleet(db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[Fleet]:
    generate = {"namespaces": 2, "nodes": 3, "deployments": 3, "pods": 24, "services": 2, "configmaps": 2}
    async with simulated(generate) as sims:
        await _gadgets(sims["east"])
        async with synced(sims, db_url=db_url, pool=pool, tmp=tmp_path, counted="pods") as fleet:
            yield fleet


@pytest.mark.parametrize("binary", KUBECTLS)
async def test_kubectl_reads_every_cluster(fleet: Fleet, binary: str) -> None:
    out = (await kubectl(fleet, "get", "pods", "-A", binary=binary)).splitlines()
    assert out[0].split()[:3] == ["NAMESPACE", "CLUSTER", "NAME"]
    assert len(out) - 1 == await fleet.sim_count("/api/v1/pods") == 48
    assert {line.split()[1] for line in out[1:]} == {"east", "west"}
    chunked = await kubectl(fleet, "get", "pods", "-A", "--chunk-size", "7", "-o", "name", binary=binary)
    assert len(chunked.split()) == 48
    deploys = await kubectl(fleet, "get", "deploy", "-A", "-o", "name", binary=binary)  # a short name
    assert len(deploys.split()) == await fleet.sim_count("/apis/apps/v1/deployments")
    every = await kubectl(fleet, "get", "all", "-A", binary=binary)  # the "all" category
    assert "deployment.apps/" in every and "pod/" in every and "service/" in every
    resources = await kubectl(fleet, "api-resources", binary=binary)
    assert any(line.split()[:2] == ["deployments", "deploy"] for line in resources.splitlines())


async def test_kubectl_selectors_outputs_and_contexts(fleet: Fleet) -> None:
    pods = (await fleet.sim("east", "GET", "/api/v1/pods"))["items"]
    sample = pods[0]
    app = sample["metadata"]["labels"]["app"]
    labelled = await kubectl(fleet, "--context", "kubepedia-east", "get", "pods", "-A", "-l", f"app={app}",
                             "-o", "name")
    assert sorted(labelled.split()) == sorted(f"pod/{p['metadata']['name']}" for p in pods
                                              if p["metadata"]["labels"].get("app") == app)
    node = sample["spec"]["nodeName"]
    on_node = await kubectl(fleet, "get", "pods", "-A", "--field-selector", f"spec.nodeName={node}",
                            "-o", "json")
    import orjson

    items = orjson.loads(on_node)["items"]
    assert items and all(i["spec"]["nodeName"] == node for i in items)
    custom = await kubectl(fleet, "get", "pods", "-A", "-o",
                           "custom-columns=NAME:.metadata.name,CLUSTER:.metadata.annotations.kubepedia\\.io/cluster",
                           "--sort-by", ".metadata.name")
    rows = [line.split() for line in custom.splitlines()[1:]]
    assert [r[0] for r in rows] == sorted(r[0] for r in rows) and {r[1] for r in rows} == {"east", "west"}
    wide = await kubectl(fleet, "get", "pods", "-A", "-o", "wide")
    assert "NODE" in wide.splitlines()[0]
    one = await kubectl(fleet, "get", "pod", "-n", sample["metadata"]["namespace"],
                        sample["metadata"]["name"], "--context", "kubepedia-east", "-o", "yaml")
    assert yaml.safe_load(one)["metadata"]["annotations"]["kubepedia.io/cluster"] == "east"
    gadgets = await kubectl(fleet, "get", "gd", "-A")
    assert gadgets.splitlines()[0].split() == ["NAMESPACE", "CLUSTER", "NAME", "COLOR"]
    assert [line.split()[3] for line in gadgets.splitlines()[1:]] == ["red", "blue"]


async def test_kubectl_delete_is_refused(fleet: Fleet) -> None:
    args = ["kubectl", "--kubeconfig", str(fleet.kubeconfig), "--context", "kubepedia-east", "delete",
            "gadget",
            "-n", "default", "g0"]
    result = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "MethodNotAllowed" in result.stderr


async def test_kubectl_watch_prints_a_change_made_in_a_cluster(fleet: Fleet) -> None:
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(fleet.kubeconfig), "get", "configmaps", "-A", "--watch",
        "--output-watch-events", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        await asyncio.wait_for(proc.stdout.readline(), 60)  # the header: the list has been printed
        await fleet.sim("west", "POST", "/api/v1/namespaces/default/configmaps",
                             {"metadata": {"name": "seen-by-kubectl"}, "data": {"a": "b"}})
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            if "seen-by-kubectl" in line:
                assert line.split()[:3] == ["ADDED", "default", "west"]
                break
    finally:
        proc.kill()
        await proc.wait()


async def test_python_client_lists_in_pages_gets_and_watches(fleet: Fleet) -> None:
    from kubernetes import client, config, watch

    api_client = await asyncio.to_thread(config.new_client_from_config, str(fleet.kubeconfig))
    core = client.CoreV1Api(api_client)

    def walk() -> list[str]:
        names, token = [], None
        while True:
            page = core.list_pod_for_all_namespaces(limit=10, _continue=token)
            names += [p.metadata.name for p in page.items]
            token = page.metadata._continue
            if not token:
                return names

    names = await asyncio.to_thread(walk)
    assert len(names) == 48
    nodes = await asyncio.to_thread(core.list_node)
    assert len(nodes.items) == 6
    rv = (await asyncio.to_thread(core.list_namespaced_config_map, "default")).metadata.resource_version
    seen: list[str] = []

    def stream() -> None:
        for event in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=rv,
                                          timeout_seconds=20):
            seen.append(f"{event['type']} {event['object'].metadata.name}")
            if event["object"].metadata.name == "from-python":
                return

    streaming = asyncio.create_task(asyncio.to_thread(stream))
    await asyncio.sleep(0.5)
    await fleet.sim("east", "POST", "/api/v1/namespaces/default/configmaps",
                         {"metadata": {"name": "from-python"}})
    await asyncio.wait_for(streaming, 60)
    assert seen[-1] == "ADDED from-python"
    api_client.close()


async def test_a_paged_walk_under_churn_returns_what_exists_throughout_once(fleet: Fleet) -> None:
    async def names() -> set[tuple[str, str, str]]:
        out = set()
        for cluster in fleet.sims:
            for p in (await fleet.sim(cluster, "GET", "/api/v1/pods"))["items"]:
                out.add((cluster, p["metadata"]["namespace"], p["metadata"]["name"]))
        return out

    before = await names()
    touched: set[tuple[str, str, str]] = set()
    stop = asyncio.Event()

    async def churn() -> None:
        victims = sorted(before)[::3]
        for i, (cluster, ns, name) in enumerate(victims):
            if stop.is_set():
                return
            touched.add((cluster, ns, name))
            await fleet.sim(cluster, "DELETE", f"/api/v1/namespaces/{ns}/pods/{name}")
            fresh = f"churn-{i}"
            touched.add((cluster, ns, fresh))
            body = {"metadata": {"name": fresh}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
            await fleet.sim(cluster, "POST", f"/api/v1/namespaces/{ns}/pods", body)
            await asyncio.sleep(0.02)

    churning = asyncio.create_task(churn())
    seen: list[tuple[str, str, str]] = []
    params = {"limit": "5"}
    try:
        while True:
            async with fleet.session.get(fleet.api + "/api/v1/pods", params=params) as resp:
                body = await resp.json()
            seen += [(i["metadata"]["annotations"]["kubepedia.io/cluster"], i["metadata"]["namespace"],
                      i["metadata"]["name"]) for i in body["items"]]
            if not body["metadata"].get("continue"):
                break
            params = {"limit": "5", "continue": body["metadata"]["continue"]}
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await churning
    throughout = (before & await names()) - touched
    assert len(seen) == len(set(seen)), "an object was returned twice"
    assert throughout <= set(seen)
    assert touched, "the churn ran during the walk"
