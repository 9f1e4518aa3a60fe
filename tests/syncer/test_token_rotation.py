"""Agent token rotation: a new token shown once, the old one working through its grace period
and not after, one 401 for every failure, and an agent switched to the new token that goes on
from its checkpoints (no relist). Real ingest and admin listeners, real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg
import pytest

import kubesim
from agent import protocol
from agent.kubeclient import Connection, KubeClient
from agent.push import HttpSink
from agent.runner import Runner
from agent.selection import Selection
from kubesim.server import SimServer
from syncer.registry import MAX_TOKEN_GRACE_S, TOKEN_GRACE_S
from tests.convergence import wait_converged
from tests.syncer.conftest import Ingest

DEADLINE_S = 60.0


async def rotate(ingest: Ingest, name: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    return await ingest.admin("POST", f"/admin/v1/clusters/{name}/token", body)


async def opens(ingest: Ingest, cluster: str, token: str) -> bool:
    """Does ``token`` open ``cluster`` on the ingest listener (its checkpoints answer 200)?"""
    async with ingest.session.get(ingest.url + protocol.checkpoints_path(cluster),
                                  headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status in (200, 401), await resp.text()
        return resp.status == 200


async def refusal(ingest: Ingest, cluster: str, token: str) -> tuple[int, bytes]:
    async with ingest.session.get(ingest.url + protocol.checkpoints_path(cluster),
                                  headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.read()


async def test_the_old_token_works_through_the_grace_period_and_not_after(
        ingest: Ingest, pool: asyncpg.Pool) -> None:
    old = await ingest.register_push("edge")
    status, body = await rotate(ingest, "edge")
    assert status == 200, body
    new = body["token"]
    assert new != old and len(new) > 30
    expires = datetime.fromisoformat(body["previousTokenExpiresAt"])
    now = await pool.fetchval("SELECT now()")
    assert TOKEN_GRACE_S - 60 < (expires - now).total_seconds() <= TOKEN_GRACE_S
    assert await opens(ingest, "edge", new) and await opens(ingest, "edge", old)
    stored = await pool.fetchrow("SELECT token_hash, previous_token_hash FROM clusters")
    assert new not in stored.values() and old not in stored.values(), "hashes only"
    # The grace period ends (the server's clock decides).
    await pool.execute("UPDATE clusters SET previous_token_expires_at = now() - interval '1 second'")
    assert not await opens(ingest, "edge", old)
    assert await opens(ingest, "edge", new)


async def test_a_tiny_grace_period_ends_on_its_own(ingest: Ingest) -> None:
    old = await ingest.register_push("edge")
    status, body = await rotate(ingest, "edge", {"graceSeconds": 0.2})
    assert status == 200, body
    assert await opens(ingest, "edge", old)
    await asyncio.sleep(0.3)
    assert not await opens(ingest, "edge", old)
    assert await opens(ingest, "edge", body["token"])


async def test_no_grace_ends_the_old_token_at_once(ingest: Ingest, pool: asyncpg.Pool) -> None:
    old = await ingest.register_push("edge")
    status, body = await rotate(ingest, "edge", {"graceSeconds": 0})
    assert (status, body["previousTokenExpiresAt"]) == (200, None)
    assert not await opens(ingest, "edge", old)
    assert await opens(ingest, "edge", body["token"])
    assert await pool.fetchval("SELECT previous_token_hash FROM clusters") is None


async def test_rotating_twice_drops_the_oldest(ingest: Ingest) -> None:
    first = await ingest.register_push("edge")
    second = (await rotate(ingest, "edge"))[1]["token"]
    third = (await rotate(ingest, "edge"))[1]["token"]
    assert not await opens(ingest, "edge", first)
    assert await opens(ingest, "edge", second) and await opens(ingest, "edge", third)


async def test_every_failure_is_the_same_401(ingest: Ingest, pool: asyncpg.Pool) -> None:
    old = await ingest.register_push("edge")
    other = await ingest.register_push("other")
    new = (await rotate(ingest, "edge"))[1]["token"]
    await pool.execute("UPDATE clusters SET previous_token_expires_at = now() - interval '1 second'")
    answers = {what: await refusal(ingest, cluster, token) for what, cluster, token in [
        ("expired", "edge", old), ("wrong", "edge", "not-a-token"), ("unknown cluster", "nope", new),
        ("another cluster's", "edge", other), ("another's previous", "other", old)]}
    assert {status for status, _ in answers.values()} == {401}
    assert len({body for _, body in answers.values()}) == 1, answers


async def test_a_rotated_token_opens_only_its_own_cluster(ingest: Ingest) -> None:
    await ingest.register_push("edge")
    await ingest.register_push("other")
    new = (await rotate(ingest, "edge"))[1]["token"]
    assert not await opens(ingest, "other", new)


@pytest.mark.parametrize(("body", "code", "words"), [
    ({"graceSeconds": "1h"}, 400, "graceSeconds must be a number of seconds"),
    ({"graceSeconds": True}, 400, "graceSeconds must be a number of seconds"),
    ({"graceSeconds": -1}, 422, "between 0 and"),
    ({"graceSeconds": MAX_TOKEN_GRACE_S + 1}, 422, "between 0 and"),
    ([1], 400, "expected a JSON object"),
])
async def test_bad_grace_periods_are_refused(ingest: Ingest, body: Any, code: int, words: str) -> None:
    old = await ingest.register_push("edge")
    status, answer = await rotate(ingest, "edge", body)
    assert (status, answer["kind"]) == (code, "Status") and words in answer["message"], answer
    assert await opens(ingest, "edge", old), "nothing changed"


async def test_a_pull_cluster_or_an_unknown_one_has_no_token_to_rotate(
        ingest: Ingest, pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO clusters (name, mode) VALUES ('pulled', 'pull')")
    status, body = await rotate(ingest, "pulled")
    assert (status, body["reason"]) == (409, "Conflict")
    assert body["message"] == ("cluster 'pulled' is a pull cluster: it has no agent token"
                               " (only push clusters do)")
    assert await pool.fetchval("SELECT token_hash FROM clusters") is None
    status, body = await rotate(ingest, "nope")
    assert (status, body["reason"], body["message"]) == (404, "NotFound", "cluster 'nope' is not registered")


async def test_rotation_needs_the_admin_token(ingest: Ingest) -> None:
    old = await ingest.register_push("edge")
    status, body = await ingest.admin("POST", "/admin/v1/clusters/edge/token", token="guess")
    assert (status, body["reason"]) == (401, "Unauthorized")
    assert await opens(ingest, "edge", old)


# --- an agent switched to the new token ------------------------------------------------------


@asynccontextmanager
async def agent(ingest: Ingest, sim: SimServer, token: str) -> AsyncIterator[Runner]:
    async with KubeClient(connection=Connection.plain(sim.url)) as client, \
            HttpSink(base_url=ingest.url, cluster="edge", token=token) as sink:
        runner = Runner(client=client, sink=sink, selection=Selection(discovery_refresh=60))
        task = asyncio.create_task(runner.run(), name="agent")
        try:
            yield runner
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def checkpointed(pool: asyncpg.Pool, runner: Runner) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while True:
        done = await pool.fetchval("SELECT count(*) FROM sync_state WHERE cluster = 'edge'"
                                   " AND checkpoint IS NOT NULL AND phase = 'watching'")
        if runner.types and done == len(runner.types):
            return
        assert asyncio.get_running_loop().time() < deadline, "no checkpoint of every type"
        await asyncio.sleep(0.1)


async def add_config_map(sim: SimServer, name: str) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            sim.url + "/api/v1/namespaces/default/configmaps",
            json={"metadata": {"name": name}, "data": {"k": "v"}}) as resp:
        assert resp.status < 300, await resp.text()


async def test_an_agent_switched_to_the_new_token_goes_on_without_a_relist(
        ingest: Ingest, pool: asyncpg.Pool) -> None:
    old = await ingest.register_push("edge")
    async with kubesim.running(generate={"namespaces": 2, "configmaps": 5, "pods": 5}, seed=9) as sim:
        async with agent(ingest, sim, old) as running:
            await wait_converged(pool, "edge", sim.url, within=DEADLINE_S)
            await checkpointed(pool, running)
            new = (await rotate(ingest, "edge"))[1]["token"]
            await add_config_map(sim, "during-the-grace")  # the old agent still delivers
            await wait_converged(pool, "edge", sim.url, within=DEADLINE_S)
        snapshots = await pool.fetchval("SELECT count(*) FROM snapshots")
        sim.sim.stats.reset()
        await add_config_map(sim, "between-the-agents")
        async with agent(ingest, sim, new):
            await add_config_map(sim, "after-the-switch")
            await wait_converged(pool, "edge", sim.url, within=DEADLINE_S)
        lists = {verb: sim.sim.stats.by_verb.get(verb, 0) for verb in ("list", "watch-list")}
        assert lists == {"list": 0, "watch-list": 0}, "the new agent went on from the checkpoints"
        assert await pool.fetchval("SELECT count(*) FROM snapshots") == snapshots
