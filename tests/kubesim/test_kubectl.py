"""The real kubectl against a kubesim server (fresh discovery cache per test)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml

from kubesim.server import SimServer
from tests.kubesim.conftest import KUBECTL, Kubectl, call, pod_body, wait_until

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: IMAGE
        ports: [{containerPort: 80}]
      - name: sidecar
        image: busybox:1.36
"""

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wg]}
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
"""

WIDGET = """
apiVersion: example.com/v1
kind: Widget
metadata: {name: gizmo, namespace: default}
spec: {size: SIZE}
"""


async def test_get_pods_all_namespaces(kubectl: Kubectl) -> None:
    out = await kubectl.run("get", "pods", "-A")
    lines = out.strip().splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert len(lines) == 13
    assert all(line.split()[0] in ("ns-000", "ns-001") for line in lines[1:])


async def test_get_wide_shows_priority_columns(kubectl: Kubectl) -> None:
    out = await kubectl.run("get", "pods", "-n", "ns-000", "-o", "wide")
    header = out.splitlines()[0].split()
    assert header[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert "IP" in header and "NODE" in header
    assert "node-00" in out


async def test_get_deploy_by_label_yaml_and_json(kubectl: Kubectl) -> None:
    as_yaml = yaml.safe_load(await kubectl.run("get", "deploy", "-n", "ns-001", "-l", "app=app-1",
                                               "-o", "yaml"))
    assert [i["metadata"]["name"] for i in as_yaml["items"]] == ["app-1"]
    as_json = orjson.loads(await kubectl.run("get", "deploy", "-n", "ns-001", "-o", "json"))
    assert as_json["items"][0]["kind"] == "Deployment"
    table = await kubectl.run("get", "deploy", "-n", "ns-001")
    assert table.splitlines()[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]


async def test_chunked_get_pages_through_everything(
    kubectl: Kubectl, sim: SimServer
) -> None:
    sim.sim.stats.reset()
    out = await kubectl.run("get", "pods", "-A", "--chunk-size=5", "-o", "name")
    assert len(out.split()) == 12
    assert sim.sim.stats.by_resource["list"]["pods"] == 3


async def test_apply_create_then_change_then_delete(kubectl: Kubectl, tmp_path: Path,
                                                    sim: SimServer) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(DEPLOYMENT.replace("IMAGE", "nginx:1.25"))
    assert "created" in await kubectl.run("apply", "-f", str(manifest))
    manifest.write_text(DEPLOYMENT.replace("IMAGE", "nginx:1.26"))
    assert "configured" in await kubectl.run("apply", "-f", str(manifest))
    assert "unchanged" in await kubectl.run("apply", "-f", str(manifest))
    got = orjson.loads(await kubectl.run("get", "deploy", "web", "-o", "json"))
    assert [c["image"] for c in got["spec"]["template"]["spec"]["containers"]] == [
        "nginx:1.26", "busybox:1.36"]
    assert got["metadata"]["generation"] == 2
    assert "deleted" in await kubectl.run("delete", "deploy", "web")
    assert not [o for o in sim.sim.dump() if o["resource"] == "deployments" and o["name"] == "web"]


async def test_api_resources(kubectl: Kubectl) -> None:
    rows = [line.split() for line in (await kubectl.run("api-resources")).splitlines()]
    assert ["deployments", "deploy", "apps/v1", "true", "Deployment"] in rows
    assert ["pods", "po", "v1", "true", "Pod"] in rows
    assert ["leases", "coordination.k8s.io/v1", "true", "Lease"] in rows


async def test_crd_then_its_objects(kubectl: Kubectl, tmp_path: Path) -> None:
    (tmp_path / "crd.yaml").write_text(CRD)
    await kubectl.run("apply", "-f", str(tmp_path / "crd.yaml"))
    widget = tmp_path / "widget.yaml"
    widget.write_text(WIDGET.replace("SIZE", "3"))
    await kubectl.run("apply", "-f", str(widget))
    widget.write_text(WIDGET.replace("SIZE", "4"))
    assert "configured" in await kubectl.run("apply", "-f", str(widget))
    listed = await kubectl.run("get", "widgets")
    assert listed.split()[:5] == ["NAME", "SIZE", "AGE", "gizmo", "4"]
    got = orjson.loads(await kubectl.run("get", "wg", "gizmo", "-o", "json"))
    assert got["apiVersion"] == "example.com/v1" and got["spec"]["size"] == 4
    await kubectl.run("delete", "crd", "widgets.example.com")
    fresh = Kubectl(kubectl.kubeconfig, tmp_path / "fresh-cache")
    assert "widgets" not in await fresh.run("api-resources")


@pytest.mark.slow
async def test_watch_sees_a_change(kubectl: Kubectl, sim: SimServer,
                                   http: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(kubectl.kubeconfig), "--cache-dir", str(kubectl.cache_dir),
        "get", "pods", "-n", "default", "--watch", "--request-timeout=20s",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        await wait_until(lambda: sim.sim.stats.by_verb["watch"] > 0, 15)
        status, _ = await call(http, "POST", f"{sim.url}/api/v1/namespaces/default/pods",
                               pod_body("watched"))
        assert status == 201
        seen = b""
        async with asyncio.timeout(10):
            while b"watched" not in seen:
                seen += await proc.stdout.readline()
        assert b"Pending" in seen
    finally:
        proc.kill()
        await proc.wait()


async def test_scale(kubectl: Kubectl, sim: SimServer, http: aiohttp.ClientSession) -> None:
    assert "scaled" in await kubectl.run("scale", "deploy", "app-0", "-n", "ns-000",
                                         "--replicas=7")
    _, deploy = await call(http, "GET", sim.url + "/apis/apps/v1/namespaces/ns-000/deployments/app-0")
    assert deploy["spec"]["replicas"] == 7 and deploy["metadata"]["generation"] == 2
    _, scale = await call(http, "GET",
                          sim.url + "/apis/apps/v1/namespaces/ns-000/deployments/app-0/scale")
    assert scale["kind"] == "Scale" and scale["spec"] == {"replicas": 7}
    assert scale["status"]["selector"] == "app=app-0"


async def test_server_dry_run_changes_nothing(kubectl: Kubectl, sim: SimServer,
                                              tmp_path: Path) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(DEPLOYMENT.replace("IMAGE", "nginx:1.25"))
    before = sim.sim.store.rv
    out = await kubectl.run("apply", "-f", str(manifest), "--dry-run=server")
    assert "created (server dry run)" in out
    await kubectl.run("delete", "pod", "-n", "ns-000", "--all", "--dry-run=server")
    await kubectl.run("scale", "deploy", "app-0", "-n", "ns-000", "--replicas=9",
                      "--dry-run=server")
    assert sim.sim.store.rv == before
    assert len([o for o in sim.sim.dump() if o["resource"] == "pods"]) == 12


async def test_printer_columns_for_more_kinds(kubectl: Kubectl, sim: SimServer,
                                              http: aiohttp.ClientSession) -> None:
    await call(http, "POST", sim.url + "/api/v1/namespaces/default/configmaps",
               {"metadata": {"name": "settings"}, "data": {"a": "1", "b": "2"}})
    out = (await kubectl.run("get", "configmaps")).split()
    assert out[:3] == ["NAME", "DATA", "AGE"] and out[3:5] == ["settings", "2"]
    rs = (await kubectl.run("get", "rs", "-n", "ns-000")).splitlines()
    assert rs[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    event = {"metadata": {"name": "e1"}, "type": "Warning", "reason": "BackOff",
             "message": "Back-off restarting", "involvedObject": {"kind": "Pod", "name": "web"},
             "lastTimestamp": "2026-01-01T00:00:00Z"}
    await call(http, "POST", sim.url + "/api/v1/namespaces/default/events", event)
    events = (await kubectl.run("get", "events")).splitlines()
    assert events[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert events[1].split()[1:4] == ["Warning", "BackOff", "pod/web"]
