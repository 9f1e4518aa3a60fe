"""``kubepedia inspect`` against the read API over real HTTP, in its own process; the schedule
of ``kubepedia serve``; a crash-looping pod made in a kubesim cluster, synced, found."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import sys
from pathlib import Path

import asyncpg
import orjson

from apiserver.inspection_runs import schedule
from apiserver.query_inspections import CHECKS
from tests.access import TEST_TOKEN
from tests.apiserver.conftest import Api
from tests.apiserver.fleet import simulated, synced
from tests.apiserver.inspecting import EXPECTED, fill_problems

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/kubepedia/v1/inspections"


async def kubepedia(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kubepedia",
        "inspect",
        *args,
        cwd=ROOT,
        env={**os.environ, "KUBEPEDIA_TOKEN": TEST_TOKEN},  # the api fixture's caller
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_inspect_runs_and_prints_a_table_per_check(api: Api, pool: asyncpg.Pool) -> None:
    await fill_problems(pool)
    code, out, err = await kubepedia("--run", "--server", api.url)
    assert code == 0, err
    assert out.startswith("inspection run 1 (request)")
    for name in {e[0] for e in EXPECTED}:
        assert f"  {name}: " in out, name
    block = out[out.index("CRITICAL  pod-crash-looping") :]
    header, *rows = block.splitlines()[1:4]
    assert header.split() == ["CLUSTER", "NAMESPACE", "OBJECT", "MESSAGE"]
    assert rows[0].split()[:3] == ["east", "web", "pods/crashy"]
    assert "CrashLoopBackOff" in rows[0]
    assert out.index("CRITICAL") < out.index("WARNING") < out.index("INFO")


async def test_inspect_filters_and_formats(api: Api, pool: asyncpg.Pool) -> None:
    await fill_problems(pool)
    code, out, err = await kubepedia(
        "--run", "--cluster", "west", "--severity", "warning", "-o", "json", "--server", api.url
    )
    assert code == 0, err
    items = orjson.loads(out)["items"]
    assert {i["name"] for i in items} == {
        e[5] for e in EXPECTED if e[1] == "west" and CHECKS[e[0]].severity == "warning"
    }
    code, out, err = await kubepedia("-o", "csv", "--check", "pvc-pending", "--server", api.url)
    assert code == 0, err
    assert [r["name"] for r in csv.DictReader(io.StringIO(out))] == ["data"]
    code, out, err = await kubepedia("--severity", "fatal", "--server", api.url)
    assert code == 1 and err.startswith("kubepedia: severity: 'fatal' is not one of"), err


async def test_the_schedule_runs(pool: asyncpg.Pool) -> None:
    await fill_problems(pool)
    task = asyncio.create_task(schedule(pool, every_s=0.05))
    try:
        for _ in range(600):
            if (
                await pool.fetchval(
                    "SELECT count(*) FROM inspection_runs WHERE trigger = 'schedule'"
                    " AND finished_at IS NOT NULL"
                )
                >= 2
            ):
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    runs = await pool.fetch("SELECT id FROM inspection_runs WHERE trigger = 'schedule' ORDER BY id")
    assert len(runs) >= 2
    assert await pool.fetchval(
        "SELECT sum(findings) FROM inspection_counts WHERE run_id = $1", runs[-1]["id"]
    ) == len(EXPECTED)


async def test_a_pod_crash_looping_in_a_member_cluster_is_found(
    db_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The acceptance: a pod made crash-looping on purpose in kubesim, synced, inspected."""
    async with (
        simulated({"namespaces": 1, "deployments": 1, "pods": 3}) as sims,
        synced(sims, db_url=db_url, pool=pool, tmp=tmp_path, counted="pods") as fleet,
    ):
        path = "/api/v1/namespaces/ns-000/pods"
        pod = {
            "metadata": {"name": "looper"},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "nginx:1.27",
                        "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}},
                    }
                ]
            },
        }
        await fleet.sim("east", "POST", path, pod)
        status = {
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "app",
                        "image": "nginx:1.27",
                        "ready": False,
                        "restartCount": 6,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    }
                ],
            }
        }
        await fleet.sim("east", "PATCH", path + "/looper/status", status, "application/merge-patch+json")
        for _ in range(600):
            if (
                await pool.fetchval(
                    "SELECT pod_restarts FROM resources WHERE cluster = 'east' AND name = 'looper'"
                )
                == 6
            ):
                break
            await asyncio.sleep(0.05)
        api = Api(url=fleet.api, session=fleet.session)
        status_code, run, _ = await api.request("POST", PREFIX + "/runs")
        assert status_code == 201, run
        code, body = await api.get(PREFIX + "/runs/latest", checks="pod-crash-looping")
        assert code == 200
        assert [(i["cluster"], i["namespace"], i["name"], i["message"]) for i in body["items"]] == [
            ("east", "ns-000", "looper", "restarted 6 times, container app waiting in CrashLoopBackOff")
        ]
        assert body["items"][0]["link"] == "/clusters/east/api/v1/namespaces/ns-000/pods/looper"
        status_code, obj = await api.get(body["items"][0]["link"])
        assert status_code == 200 and obj["metadata"]["name"] == "looper"
