"""The ``kubesim`` command: serve with --port 0 and --kubeconfig-out, and load."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml

from tests.kubesim.conftest import call


@pytest.mark.slow
async def test_serve_and_load_commands(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    kubeconfig, port_file = tmp_path / "kubeconfig", tmp_path / "port"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubesim", "serve", "--port", "0", "--generate", "pods=20,nodes=2",
        "--seed", "4", "--kubeconfig-out", str(kubeconfig), "--name", "east",
        "--port-file", str(port_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        url = line.rsplit("serving on ", 1)[1].strip()
        assert url == f"http://127.0.0.1:{int(port_file.read_text())}"
        config = yaml.safe_load(kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"] == url
        assert config["current-context"] == "east"
        _, pods = await call(http, "GET", url + "/api/v1/pods")
        assert len(pods["items"]) == 20
        load = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kubesim", "load", "--server", url, "--rate", "100",
            "--duration", "0.5", "--seed", "2", stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(load.communicate(), 20)
        stats = orjson.loads(out.splitlines()[-1])
        assert stats["creates"] > 0 and stats["errors"] == 0
    finally:
        proc.terminate()
        assert await proc.wait() == 0
