"""``kubepedia cluster add|list|remove`` against a running server, as a user types them."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from agent.push import HttpSink
from tests.convergence import wait_converged
from tests.e2e.procs import Server, cleanup, start_server, start_sim
from tests.factories import PODS


async def kubepedia(server: Server, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubepedia", "cluster", "--server", server.admin_url,
        "--data-dir", str(server.data_dir), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cluster_commands(tmp_path: Path, db_url: str, pool: asyncpg.Pool) -> None:
    sim = await start_sim(tmp_path, "dev", generate="namespaces=2,pods=20", seed=5)
    async with cleanup(sim.proc) as procs:
        server = await start_server(tmp_path, "syncer", database_url=db_url)
        procs.append(server.proc)
        code, out, _ = await kubepedia(server, "add", "dev", "--kubeconfig", str(sim.kubeconfig),
                                       "--label", "env=dev")
        assert code == 0 and "registered (pull)" in out
        code, out, _ = await kubepedia(server, "add", "edge", "--push")
        assert code == 0
        token = out.strip().splitlines()[-1]
        assert len(token) > 30
        code, _, err = await kubepedia(server, "add", "dev", "--push")
        assert code == 1 and err.strip() == "kubepedia: cluster 'dev' already exists"
        code, out, _ = await kubepedia(server, "rotate-token", "edge", "--grace", "10m")
        assert code == 0 and "new agent token, shown once (the previous token works until" in out, out
        rotated = out.strip().splitlines()[-1]
        assert len(rotated) > 30 and rotated != token
        code, out, _ = await kubepedia(server, "rotate-token", "edge", "--grace", "0")
        assert code == 0 and "(the previous token no longer works)" in out, out
        code, _, err = await kubepedia(server, "rotate-token", "dev")
        assert code == 1 and err.strip() == ("kubepedia: cluster 'dev' is a pull cluster: it has no agent "
                                             "token (only push clusters do)")
        await wait_converged(pool, "dev", sim.url)
        code, out, _ = await kubepedia(server, "list", "-o", "json")
        listed = {c["name"]: c for c in orjson.loads(out)["clusters"]}
        assert listed["dev"]["mode"] == "pull" and listed["dev"]["labels"] == {"env": "dev"}
        assert listed["dev"]["objects"] > 20 and listed["dev"]["types"]
        assert listed["edge"]["mode"] == "push" and listed["edge"]["healthy"] is None
        code, out, _ = await kubepedia(server, "list")
        assert out.splitlines()[0].split() == ["NAME", "MODE", "HEALTH", "TYPES", "OBJECTS", "SKIPPED",
                                               "ERRORS", "LAG"]
        code, out, _ = await kubepedia(server, "remove", "dev")
        assert code == 0 and "removed" in out
        assert await pool.fetchval("SELECT count(*) FROM resources WHERE cluster = 'dev'") == 0
        code, _, err = await kubepedia(server, "remove", "dev")
        assert code == 1 and "not registered" in err


async def test_cli_without_a_server(tmp_path: Path) -> None:
    (tmp_path / "admin.token").write_text("t\n")
    (tmp_path / "admin.token").chmod(0o600)  # a token open to others is refused
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubepedia", "cluster", "--server", "http://127.0.0.1:9",
        "--data-dir", str(tmp_path), "list", stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert err.decode().startswith("kubepedia: cannot reach the kubepedia server at http://127.0.0.1:9")


async def test_silent_push_cluster_turns_stale(tmp_path: Path, db_url: str) -> None:
    """An agent that stops talking leaves its cluster reported stale (after 2 s here;
    300 s unless ``KUBEPEDIA_PUSH_SILENCE_SECONDS`` says otherwise)."""
    server = await start_server(tmp_path, "syncer", database_url=db_url,
                                env={"KUBEPEDIA_PUSH_SILENCE_SECONDS": "2"})
    async with cleanup(server.proc):
        code, out, _ = await kubepedia(server, "add", "edge", "--push")
        assert code == 0
        token = out.strip().splitlines()[-1]
        async with HttpSink(base_url=server.ingest, cluster="edge", token=token) as agent:
            await agent.changes(PODS, [], resource_version="1")  # the agent's word, then silence
        deadline = asyncio.get_running_loop().time() + 60
        while not (edge := (await listed(server))[0])["stale"]:
            assert asyncio.get_running_loop().time() < deadline, edge
            await asyncio.sleep(0.5)
        assert (edge["healthy"], edge["healthMessage"]) == (False, "no word from the agent")
        assert edge["lastSeenAt"] is not None and edge["types"][0]["checkpoint"] == "1"
        code, out, _ = await kubepedia(server, "list")
        assert out.splitlines()[1].split()[:2] == ["edge", "push"], out
        assert "Stale (no word from the agent)" in out.splitlines()[1], out


async def listed(server: Server) -> list[dict[str, Any]]:
    code, out, err = await kubepedia(server, "list", "-o", "json")
    assert code == 0, err
    clusters: list[dict[str, Any]] = orjson.loads(out)["clusters"]
    return clusters
