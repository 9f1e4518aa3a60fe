"""The deployment manifests render with kubectl's kustomize (older kubectls too), pass
``kubectl apply --dry-run=server`` against kubesim, and match the commands they run."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from agent.cli import build_parser
from apiserver.discovery import CLUSTERPEDIA
from kubepedia.commands import _parser as kubepedia_parser
from kubesim.kubeconfig import write_kubeconfig
from kubesim.server import SimServer
from kubesim.server import running as kubesim_running

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_agent_manifests_render_and_match_the_cli() -> None:
    rendered = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy" / "agent")],
                              capture_output=True, text=True, check=True).stdout
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered)}
    assert {kind for kind, _ in docs} == {"Namespace", "ServiceAccount", "ClusterRole",
                                          "ClusterRoleBinding", "ConfigMap", "Deployment"}
    role = docs[("ClusterRole", "kubepedia-agent")]
    assert {verb for rule in role["rules"] for verb in rule["verbs"]} == {"get", "list", "watch"}
    deployment = docs[("Deployment", "kubepedia-agent")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["valueFrom"] for e in container["env"]}
    config_map = env["CLUSTER"]["configMapKeyRef"]["name"]
    assert ("ConfigMap", config_map) in docs, "the generated ConfigMap name is referenced"
    values = docs[("ConfigMap", config_map)]["data"]
    args = [a.replace("$(CLUSTER)", values["cluster"]).replace("$(SYNCER)", values["syncer"])
            for a in container["args"]]
    assert args[0] == "agent"
    parsed = build_parser().parse_args(args[1:])
    assert (parsed.cluster, parsed.syncer) == ("CHANGE-ME", "https://kubepedia-syncer.example:8081")
    assert env["KUBEPEDIA_AGENT_TOKEN"]["secretKeyRef"]["name"] == "kubepedia-agent"


# -- every base against kubesim, as `kubectl apply --dry-run=server` meets a real cluster --------

OLDER_KUBECTLS = sorted(Path("/usr/lib/google-cloud-sdk/bin").glob("kubectl.1.*"))
APPLIED_BASES = ("agent", "server")  # deploy/postgres needs CloudNativePG's CRDs: rendered only
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


def render(base: str, kubectl: str = "kubectl") -> str:
    return subprocess.run([kubectl, "kustomize", str(ROOT / "deploy" / base)],
                          capture_output=True, text=True, check=True).stdout


def _docs(rendered: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered)}


@dataclass
class Cluster:
    """A kubesim server and kubectl pointed at it (a discovery cache of the test's own)."""

    sim: SimServer
    kubeconfig: Path
    cache: Path

    async def kubectl(self, *args: str, stdin: str = "") -> tuple[int, str]:
        """kubectl's exit code and output (run without blocking the loop serving kubesim)."""
        proc = await asyncio.create_subprocess_exec(
            "kubectl", "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache), *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "HOME": str(self.cache)})
        out, _ = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    def url(self, obj: dict[str, Any]) -> str:
        """The object's path on the server, found by its kind as kubectl's RESTMapper does."""
        group, _, version = obj["apiVersion"].rpartition("/")
        rtype = next(t for t in self.sim.sim.registry.all() if (t.group, t.kind) == (group, obj["kind"]))
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        scope = f"/namespaces/{obj['metadata']['namespace']}" if rtype.namespaced else ""
        return f"{self.sim.url}{base}{scope}/{rtype.resource}/{obj['metadata']['name']}"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with kubesim_running(seed=1) as sim:
        yield Cluster(sim, write_kubeconfig(tmp_path / "kubeconfig", sim.url), tmp_path / "cache")


async def _make_namespace(cluster: Cluster, http: aiohttp.ClientSession, name: str) -> None:
    """The namespace, made for real: a dry run of a namespace makes nothing that objects in it
    could be dry-run into (kube-apiserver answers their creates 404 for it)."""
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    async with http.post(cluster.sim.url + "/api/v1/namespaces", json=body) as resp:
        assert resp.status == 201


@needs_kubectl
@pytest.mark.parametrize("base", APPLIED_BASES)
async def test_base_passes_server_dry_run_and_stores_nothing(cluster: Cluster, base: str) -> None:
    rendered = render(base)
    async with aiohttp.ClientSession() as http:
        await _make_namespace(cluster, http, "kubepedia")
        code, out = await cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered)
        assert code == 0, out
        docs = _docs(rendered)
        assert out.count("(server dry run)") == len(docs)
        for (kind, _), obj in docs.items():
            if kind == "Namespace":
                continue
            async with http.get(cluster.url(obj)) as resp:
                assert resp.status == 404, f"{kind} {obj['metadata']['name']} was stored by a dry run"


@needs_kubectl
async def test_unknown_field_is_refused_as_kube_apiserver_refuses_it(cluster: Cluster) -> None:
    docs = list(yaml.safe_load_all(render("server")))
    api = next(d for d in docs if (d["kind"], d["metadata"]["name"]) == ("Deployment", "kubepedia-api"))
    api["spec"]["template"]["spec"]["containers"][0]["imagePolicy"] = "Always"  # imagePullPolicy
    async with aiohttp.ClientSession() as http:
        await _make_namespace(cluster, http, "kubepedia")
    code, out = await cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(api))
    assert code == 1
    assert out.strip() == (
        'Error from server (BadRequest): error when creating "STDIN": Deployment in version "v1" cannot be '
        'handled as a Deployment: strict decoding error: unknown field '
        '"spec.template.spec.containers[0].imagePolicy"')


@needs_kubectl
async def test_unknown_kind_is_refused_as_against_a_real_cluster(cluster: Cluster) -> None:
    manifest = "apiVersion: policy/v1\nkind: PodDisruptionBudgett\nmetadata: {name: x, namespace: default}\n"
    code, out = await cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=manifest)
    assert code == 1
    assert out.startswith('error: resource mapping not found for name: "x" namespace: "default" from "STDIN":'
                          ' no matches for kind "PodDisruptionBudgett" in version "policy/v1"')


# -- what the server base runs -----------------------------------------------------------------


def _args(docs: dict[tuple[str, str], dict[str, Any]], name: str) -> argparse.Namespace:
    container = docs[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "serve"
    parser, _ = kubepedia_parser()
    return parser.parse_args(container["args"])


@needs_kubectl
def test_server_base_runs_a_stateless_api_behind_a_pdb_and_the_syncer_apart() -> None:
    docs = _docs(render("server"))
    api, syncer = _args(docs, "kubepedia-api"), _args(docs, "kubepedia-syncer")
    assert (api.role, syncer.role) == ("api", "syncer")
    assert api.tls_cert is not None and api.tls_key is not None
    assert docs[("Deployment", "kubepedia-api")]["spec"]["replicas"] > 1
    pdb = docs[("PodDisruptionBudget", "kubepedia-api")]["spec"]
    pods = docs[("Deployment", "kubepedia-api")]["spec"]["template"]["metadata"]["labels"]
    assert pdb["minAvailable"] == 1 and pdb["selector"]["matchLabels"].items() <= pods.items()
    service = docs[("Service", "kubepedia-api")]
    apiservice = docs[("APIService", f"{CLUSTERPEDIA.version}.{CLUSTERPEDIA.group}")]["spec"]
    assert (apiservice["group"], apiservice["version"]) == (CLUSTERPEDIA.group, CLUSTERPEDIA.version)
    assert apiservice["service"] == {"name": "kubepedia-api", "namespace": "kubepedia",
                                     "port": service["spec"]["ports"][0]["port"]}
    assert api.api_listen[1] == service["spec"]["ports"][0]["port"] + 8000  # 443 -> 8443


@needs_kubectl
@pytest.mark.parametrize("kubectl", OLDER_KUBECTLS, ids=lambda p: p.name)
@pytest.mark.parametrize("base", [*APPLIED_BASES, "postgres"])
def test_bases_render_alike_with_older_kubectls(kubectl: Path, base: str) -> None:
    assert _docs(render(base, str(kubectl))).keys() == _docs(render(base)).keys()
