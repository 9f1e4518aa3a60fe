"""What the operator sees: refusals in `cluster list`, escaped text, no store internals."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
import yaml
from aiohttp import web

import kubesim
from agent import protocol
from agent.events import WatchEvent
from agent.logs import KeyValueFormatter
from agent.push import HttpSink
from agent.sink import SinkRejected
from kubepedia.clusters import render_table
from kubesim.kubeconfig import kubeconfig
from syncer.db import create_pool
from syncer.status import errors_as_status
from syncer.store_app import POOL, health_routes
from tests.factories import PODS, pod
from tests.serving import serve_app
from tests.syncer.conftest import ADMIN, Ingest

ESC = "\x1b"


async def _cli(ingest: Ingest, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubepedia", "cluster", "--server", ingest.admin_url, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBEPEDIA_ADMIN_TOKEN": ADMIN})
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_refused_push_batch_shows_in_cluster_list(ingest: Ingest) -> None:
    token = await ingest.register_push("edge")
    async with HttpSink(base_url=ingest.url, cluster="edge", token=token) as sink:
        await sink.changes(PODS, [WatchEvent(type="ADDED", object=pod("a", 1))], resource_version="1")
        malformed = {"type": protocol.type_to_dict(PODS), "resourceVersion": "2",
                     "events": [{"type": "UPSERTED", "object": pod("b", 2)}]}
        with pytest.raises(SinkRejected, match="unknown event type"):
            await sink._call("POST", protocol.changes_path("edge"), malformed)
    code, out, _ = await _cli(ingest, "list")
    assert code == 0
    head, row = out.splitlines()[:2]
    assert head.split() == ["NAME", "MODE", "HEALTH", "TYPES", "OBJECTS", "SKIPPED", "ERRORS", "LAG"]
    assert row.split()[:7] == ["edge", "push", "Healthy", "1", "1", "0", "1"]
    code, out, _ = await _cli(ingest, "list", "-o", "wide")
    assert ("edge/pods: watching objects=1 checkpoint=1 error=request refused: item 0: unknown event type"
            in out)


async def test_agent_text_is_escaped_in_cluster_list(ingest: Ingest) -> None:
    token = await ingest.register_push("edge")
    async with HttpSink(base_url=ingest.url, cluster="edge", token=token) as sink:
        hostile = pod(f"x{ESC}[2J\x9b31m\u202e", 1, namespace=f"ns{ESC}]0;owned\a")
        await sink.changes(PODS, [WatchEvent(type="ADDED", object=hostile)], resource_version="1")
    for output in ("wide", "json"):
        code, out, _ = await _cli(ingest, "list", "-o", output)
        assert code == 0 and "skipped" in out
        assert not {ESC, "\a", "\x9b", "\u202e"} & set(out), "no control or format character"
        assert "\\x1b" in out or "\\u001b" in out
    table = render_table([{"name": "n", "mode": "push", "healthy": False, "healthMessage": f"a{ESC}[31m\nb",
                           "types": [], "objects": 0, "errors": 0, "lagSeconds": None}], wide=False)
    assert ESC not in table and "\n" not in table.splitlines()[1] and len(table.splitlines()) == 2


def test_log_lines_escape_control_characters() -> None:
    formatter = KeyValueFormatter("%(levelname)s %(message)s")
    record = logging.makeLogRecord({"msg": f"skipped a{ESC}[31m\nINFO forged line", "levelname": "INFO"})
    record.__dict__.update(cluster=f"c{ESC}[2J", error=f"bad name {ESC}]0;t\a\u202e")
    line = formatter.format(record)
    assert "\n" not in line and ESC not in line and "\a" not in line and "\u202e" not in line
    assert line.startswith("INFO skipped a\\x1b[31m\\nINFO forged line cluster=c\\x1b[2J error=\"bad name")
    assert "\\u202e" in line


async def test_store_errors_are_logged_not_answered(ingest: Ingest, caplog: pytest.LogCaptureFixture) -> None:
    secret = "the-db-host.internal:6432 user=kubepedia"

    async def fails(request: web.Request) -> web.Response:
        raise asyncpg.CannotConnectNowError(f"cannot connect to {secret}")

    app = web.Application(middlewares=[errors_as_status])
    app.add_routes([web.get("/fails", fails), *health_routes()])
    app[POOL] = await create_pool("postgresql://kp@127.0.0.1:9/none", min_size=0)  # nothing listens
    runner, url = await serve_app(app)
    try:
        answers: dict[str, Any] = {}
        for path in ("/fails", "/readyz"):
            async with ingest.session.get(url + path) as resp:
                body = orjson.loads(await resp.read())
                answers[path] = (resp.status, body, resp.headers.get("Retry-After"))
    finally:
        await runner.cleanup()
        await app[POOL].close()
    status, body, retry_after = answers["/fails"]
    assert (status, body["kind"], body["message"], retry_after) == (
        503, "Status", "the store is unavailable; retry later", "2")
    assert answers["/readyz"][:2] == (503, {"status": "unavailable", "reason": "the store does not answer"})
    assert secret not in str(answers)
    logged = " ".join(str(r.__dict__.get("error")) for r in caplog.records)
    assert secret in logged and "127.0.0.1" in logged


async def _until(check: Any, what: str) -> Any:
    """Poll ``check()`` until it returns something true (a guard against hanging, not a
    bound on speed)."""
    for _ in range(1200):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {what}")


async def test_pull_mode_skips_what_it_cannot_store_and_goes_on(ingest: Ingest, pool: asyncpg.Pool) -> None:
    async with kubesim.running(generate={"namespaces": 1, "configmaps": 3}, seed=1) as sim:
        async with aiohttp.ClientSession() as session:
            odd = {"metadata": {"name": "odd", "labels": {"team": "x" * 100}}, "data": {"k": "v"}}
            async with session.post(sim.url + "/api/v1/namespaces/default/configmaps", json=odd) as resp:
                assert resp.status == 201
            status, body = await ingest.admin("POST", "/admin/v1/clusters", {
                "name": "pulled", "mode": "pull", "kubeconfig": yaml.safe_dump(kubeconfig(sim.url)),
                "settings": {"selection": {"discoveryRefreshSeconds": 1}}})
            assert status == 201, body
            state = "SELECT skipped, last_error, phase FROM sync_state WHERE resource = 'configmaps'"
            row = await _until(lambda: pool.fetchrow(state + " AND phase = 'watching'"), "configmaps synced")
            assert row["skipped"] == 1 and "(default/odd)" in row["last_error"]
            fresh = {"metadata": {"name": "later"}, "data": {"k": "v"}}
            async with session.post(sim.url + "/api/v1/namespaces/default/configmaps", json=fresh) as resp:
                assert resp.status == 201
        await _until(lambda: pool.fetchval("SELECT 1 FROM resources WHERE name = 'later'"),
                     "the type goes on syncing")
        _, overview = await ingest.admin("GET", "/admin/v1/clusters")
        [entry] = overview["clusters"]
        assert entry["errors"] >= 1 and entry["skipped"] == 1
        status, _ = await ingest.admin("DELETE", "/admin/v1/clusters/pulled")
        assert status == 200


async def test_quotas_are_set_when_a_cluster_is_added(ingest: Ingest, pool: asyncpg.Pool) -> None:
    code, out, _ = await _cli(ingest, "add", "q", "--push", "--max-types", "5", "--max-objects", "1000")
    assert code == 0, out
    settings = await pool.fetchval("SELECT settings FROM clusters WHERE name = 'q'")
    assert (settings["maxTypes"], settings["maxObjects"]) == (5, 1000)
    code, out, err = await _cli(ingest, "add", "r", "--push", "--max-objects", "0")
    assert (code, out, err) == (1, "", "kubepedia: settings.maxObjects must be a positive integer\n")
