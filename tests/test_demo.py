"""``kubepedia demo`` as a newcomer runs it: three clusters synced and served; kubectl works
with the kubeconfig it writes; Ctrl-C stops it cleanly; a second run replaces the first."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.slow


async def _kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, ["kubectl", "--kubeconfig", str(kubeconfig), *args],
                                   capture_output=True, text=True, check=False)


# What the demo's clusters carry on purpose (kubesim --generate problems=1), in each cluster.
PROBLEMS = {"pod-crash-looping", "pod-pending", "deployment-unavailable", "node-not-ready", "node-pressure",
            "container-without-resources", "container-latest-image", "pvc-pending",
            "service-without-endpoints"}


async def _inspections_find_each_problem(printed: str, data_dir: Path) -> None:
    match = re.search(r"kubepedia inspect --run --server (\S+)", printed)
    assert match, printed
    found: set[tuple[str, str]] = set()
    for _ in range(60):  # until every cluster's problems are synced
        command = [sys.executable, "-m", "kubepedia", "inspect", "--run", "-o", "json",
                   "--server", match.group(1)]
        # The demo's data dir holds the read token and the certificate the command uses.
        env = {**os.environ, "KUBEPEDIA_DATA_DIR": str(data_dir)}
        result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=False,
                                         env=env)
        assert result.returncode == 0, result.stderr
        found = {(i["cluster"], i["check"]) for i in orjson.loads(result.stdout)["items"]}
        if {c for c, _ in found} == {"demo-east", "demo-west", "demo-edge"} and all(
                (c, check) in found for c in ("demo-east", "demo-west", "demo-edge") for check in PROBLEMS):
            return
        await asyncio.sleep(2)
    raise AssertionError(f"not found: {sorted(found)}")


async def _run_demo(data_dir: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubepedia", "demo", "--data-dir", str(data_dir), "--api-listen", "127.0.0.1:0",
        "--ingest-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBEPEDIA_DATABASE_URL": ""})
    assert proc.stdout is not None
    try:
        printed = ""
        while "Ctrl-C" not in printed:
            line = (await asyncio.wait_for(proc.stdout.readline(), 180)).decode()
            assert line, (await proc.stderr.read()).decode()[-3000:] if proc.stderr else ""
            printed += line
        kubeconfig = data_dir / "kubeconfig"
        assert f"kubectl --kubeconfig {kubeconfig} get pods -A" in printed
        clusters: set[str] = set()
        for _ in range(300):  # until every cluster's pods have arrived
            result = await _kubectl(kubeconfig, "get", "pods", "-A", "--no-headers")
            clusters = {line.split()[1] for line in result.stdout.splitlines()}
            if clusters == {"demo-east", "demo-west", "demo-edge"}:
                break
            await asyncio.sleep(0.2)
        assert clusters == {"demo-east", "demo-west", "demo-edge"}
        # The CRD that names the COLOR column is a type of its own, written beside the pods:
        # its columns are served once it is stored (a pod arriving first says nothing of it).
        header: list[str] = []
        for _ in range(150):
            gadgets = await _kubectl(kubeconfig, "get", "gadgets", "-A")
            header = (gadgets.stdout.splitlines() or [""])[0].split()
            if header == ["NAMESPACE", "CLUSTER", "NAME", "COLOR"]:
                break
            await asyncio.sleep(0.2)
        assert header == ["NAMESPACE", "CLUSTER", "NAME", "COLOR"]
        one = await _kubectl(kubeconfig, "--context", "kubepedia-demo-west", "get", "nodes", "--no-headers")
        assert one.returncode == 0 and {line.split()[0] for line in one.stdout.splitlines()} == {"demo-west"}
        await _inspections_find_each_problem(printed, data_dir)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-3000:]


async def test_demo_twice(embedded_data_dir: Path) -> None:
    await _run_demo(embedded_data_dir)
    await _run_demo(embedded_data_dir)  # the same data dir: the earlier clusters are replaced
