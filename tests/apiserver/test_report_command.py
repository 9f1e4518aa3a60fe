"""``kubepedia report``: the command against the read API over real HTTP, in its own process."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import sys
from pathlib import Path

import asyncpg
import orjson
import pytest_asyncio

from kubepedia.report import ascii_json, table
from tests.access import TEST_TOKEN
from tests.apiserver.conftest import Api
from tests.apiserver.reporting import Synced, expected_pods, fill_reports

ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture
async def synced(pool: asyncpg.Pool) -> Synced:
    return await fill_reports(pool)


async def kubepedia(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubepedia", "report", *args, cwd=ROOT,
        env={**os.environ, "KUBEPEDIA_TOKEN": TEST_TOKEN},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_report_as_a_table(api: Api, synced: Synced) -> None:
    code, out, err = await kubepedia("pods", "--server", api.url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["CLUSTER", "PODS", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "UNKNOWN",
                                "OTHER", "RESTARTS"]
    expected = expected_pods(synced)
    assert [line.split() for line in lines[1:]] == [[str(v) for v in row.values()] for row in expected]


async def test_filters_and_formats(api: Api, synced: Synced) -> None:
    code, out, err = await kubepedia("pods", "--clusters", "west", "--namespaces", "web", "-o", "json",
                                     "--server", api.url)
    assert code == 0, err
    assert orjson.loads(out)["items"] == expected_pods(synced, clusters={"west"}, namespaces={"web"})
    code, out, err = await kubepedia("events", "--since", "2026-01-03", "--before", "2026-01-04", "-o", "csv",
                                     "--server", api.url)
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["cluster", "type", "reason", "events", "occurrences"] and len(rows) > 1
    code, out, err = await kubepedia("--server", api.url)
    assert code == 0 and out.split()[:2] == ["NAME", "DESCRIPTION"] and "images" in out


async def test_failures_are_one_line(api: Api) -> None:
    code, out, err = await kubepedia("widgets", "--server", api.url)
    assert code == 1 and out == ""
    assert err.startswith("kubepedia: report 'widgets' not found") and err.count("\n") == 1
    code, _, err = await kubepedia("events", "--since", "soon", "--server", api.url)
    assert code == 1 and "since: invalid time 'soon'" in err and err.count("\n") == 1
    code, _, err = await kubepedia("pods", "--server", "http://127.0.0.1:9")
    assert code == 1 and "cannot reach the kubepedia read API at http://127.0.0.1:9" in err
    assert err.count("\n") == 1


def test_cells_from_clusters_cannot_drive_the_terminal() -> None:
    shown = table(["image"], [{"image": "evil\x1b[2J\u202eimage"}])
    assert "\x1b" not in shown and "\u202e" not in shown
    text = ascii_json({"image": "\x1b[2J\u202e\U0001f600"})
    assert text.isascii() and "\x1b" not in text
    assert orjson.loads(text) == {"image": "\x1b[2J\u202e\U0001f600"}
