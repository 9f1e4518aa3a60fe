"""``kubepedia kubeconfig`` against a running read API, and kubectl using what it printed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from kubepedia.tls import CERT_FILE
from tests.access import TEST_TOKEN
from tests.apiserver.conftest import CLUSTERS, Api


async def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, list(args), capture_output=True, text=True, check=False)


async def test_clusters_endpoint(api: Api, filled: dict[str, Any]) -> None:
    status, body = await api.get("/clusters")
    assert status == 200 and [c["name"] for c in body["items"]] == sorted(CLUSTERS)


async def test_kubeconfig_has_a_context_per_cluster(tls_api: Api, filled: dict[str, Any],
                                                    tmp_path: Path) -> None:
    api = tls_api
    result = await _run(sys.executable, "-m", "kubepedia", "kubeconfig", "--server", api.url,
                        "--token", TEST_TOKEN, "--certificate-authority", str(tmp_path / CERT_FILE))
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load(result.stdout)
    assert doc["users"] == [{"name": "kubepedia", "user": {"token": TEST_TOKEN}}]
    assert doc["current-context"] == "kubepedia"
    assert {c["name"] for c in doc["contexts"]} == {"kubepedia", *(f"kubepedia-{c}" for c in CLUSTERS)}
    path = tmp_path / "kubeconfig"
    path.write_text(result.stdout)
    one = await _run("kubectl", "--kubeconfig", str(path), "--context", "kubepedia-west", "get", "nodes",
                     "-o", "name")
    assert one.returncode == 0, one.stderr
    assert one.stdout.split() == ["node/west-node-0", "node/west-node-1"]
    every = await _run("kubectl", "--kubeconfig", str(path), "get", "nodes", "-o", "name")
    assert len(every.stdout.split()) == 2 * len(CLUSTERS)


async def test_kubeconfig_without_a_server_is_one_line() -> None:
    result = await _run(sys.executable, "-m", "kubepedia", "kubeconfig", "--server", "http://127.0.0.1:9")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kubepedia: cannot reach the kubepedia read API")
