"""The deployment manifests render with kubectl's kustomize and match the agent's CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from agent.cli import build_parser

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
