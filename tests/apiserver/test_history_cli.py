"""``kubepedia history`` as a user runs it, against a running read API."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from typing import Any

import asyncpg

from apiserver.times import rfc3339
from syncer.ingest import Store
from tests.access import TEST_TOKEN
from tests.apiserver.conftest import Api
from tests.factories import PODS, event

Synced = dict[str, list[dict[str, Any]]]


async def _kubepedia(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "kubepedia", "history", *args],
                                   capture_output=True, text=True, timeout=120, check=False,
                                   env={**os.environ, "KUBEPEDIA_TOKEN": TEST_TOKEN})


async def _changed(pool: asyncpg.Pool, filled: Synced) -> tuple[dict[str, Any], str]:
    since = rfc3339(await pool.fetchval("SELECT clock_timestamp()"))
    target = filled["west"][13]
    meta = {**target["metadata"], "resourceVersion": "800", "labels": {**target["metadata"]["labels"],
                                                                         "step": "one"}}
    await Store(pool).apply_batch(cluster="west", rtype=PODS,
                                  events=[event("MODIFIED", {**target, "metadata": meta})])
    return target, since


async def test_an_objects_history_as_a_table_json_csv_and_diffs(api: Api, filled: Synced,
                                                                 pool: asyncpg.Pool) -> None:
    target, _ = await _changed(pool, filled)
    name, ns = target["metadata"]["name"], target["metadata"]["namespace"]
    result = await _kubepedia(f"pod/{name}", "-n", ns, "--cluster", "west", "--server", api.url)
    assert result.returncode == 0, result.stderr
    head, *rows = [line.split(None, 5) for line in result.stdout.splitlines()]
    assert head == ["SEQ", "TIME", "CLUSTER", "CHANGE", "RESOURCEVERSION", "CHANGED"]
    assert [r[2:4] for r in rows] == [["west", "ADDED"], ["west", "MODIFIED"]]
    assert rows[1][5] in ("metadata.labels.step, metadata.resourceVersion",
                          "metadata.resourceVersion, metadata.labels.step")
    result = await _kubepedia("pods", name, "-n", ns, "-o", "json", "--server", api.url)  # every cluster
    items = json.loads(result.stdout)["items"]
    status, body = await api.get("/kubepedia/v1/history/object", resource="pods", namespace=ns, name=name)
    assert status == 200 and items == body["items"] and len(items) == 4
    result = await _kubepedia(f"pods/{name}", "-n", ns, "-o", "csv", "--limit", "2", "--server", api.url)
    table = list(csv.reader(io.StringIO(result.stdout)))
    assert table[0][0] == "SEQ" and len(table) == 3
    result = await _kubepedia(f"pod/{name}", "-n", ns, "--cluster", "west", "--diff", "--server", api.url)
    assert "+    step: one" in result.stdout.splitlines()


async def test_a_namespaces_changes(api: Api, filled: Synced, pool: asyncpg.Pool) -> None:
    target, since = await _changed(pool, filled)
    result = await _kubepedia("-n", target["metadata"]["namespace"], "--since", since, "--server", api.url)
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[0] == ["SEQ", "TIME", "CLUSTER", "NAMESPACE", "KIND", "NAME", "CHANGE"]
    assert [line[2:] for line in lines[1:]] == [["west", target["metadata"]["namespace"], "Pod",
                                                 target["metadata"]["name"], "MODIFIED"]]
    result = await _kubepedia("--types", "pods", "--change-types", "ADDED", "--cluster", "east",
                              "--limit", "5", "-o", "json", "--server", api.url)
    items = json.loads(result.stdout)["items"]
    assert len(items) == 5 and {(i["cluster"], i["type"]) for i in items} == {("east", "ADDED")}


async def test_mistakes_are_one_line(api: Api, filled: Synced) -> None:
    for args, said in [
        (["--since", "yesterday"], "invalid value for since"),
        (["pod", "a", "b"], "TYPE/NAME"),
        (["pod/a/b"], "invalid value for name"),
        (["pod/a", "--since", "2026-01-01"], "select changes"),
        (["--diff"], "name the object"),
        (["-n", "web", "--server", "http://127.0.0.1:9"], "cannot reach the kubepedia read API"),
    ]:
        result = await _kubepedia(*args, *([] if "--server" in args else ["--server", api.url]))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and said in lines[0], (args, result.stderr)
