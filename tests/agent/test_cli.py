from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.push import HttpSink
from agent.sink import SinkUnavailable
from kube.resources import ResourceType


def test_bad_selection_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "sel.yaml"
    bad.write_text("resources: 3\n")
    code = main(["--cluster", "c", "--syncer", "http://127.0.0.1:9", "--token", "t", "--config", str(bad)])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "resources must be a mapping" in lines[0]


def test_token_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEPEDIA_AGENT_TOKEN", raising=False)
    assert main(["--cluster", "c", "--syncer", "http://127.0.0.1:9"]) == 2


def test_module_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agent", "--help"], capture_output=True, text=True, check=True
    )
    assert "--cluster" in out.stdout and "--syncer" in out.stdout


async def test_http_sink_unreachable() -> None:
    rtype = ResourceType(group="", version="v1", resource="pods", kind="Pod", namespaced=True)
    async with HttpSink(base_url="http://127.0.0.1:9", cluster="c", token="t") as sink:
        with pytest.raises(SinkUnavailable):
            await sink.snapshot_start(rtype)
        with pytest.raises(SinkUnavailable):
            await sink.checkpoints()
