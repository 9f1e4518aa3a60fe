"""Realistic objects, --generate and the load generator."""

from __future__ import annotations

import random

import aiohttp
import orjson

from kubesim import objects
from kubesim.generate import parse_counts
from kubesim.load import LoadGenerator
from kubesim.server import SimServer, running
from tests.kubesim.conftest import call, fast_config


def test_make_pod_is_realistic_and_deterministic() -> None:
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
             "metadata": {"name": "web-abc", "uid": "u-1"}}
    pods = [objects.make_pod(random.Random(n), "ns", f"p{n}", owner=owner) for n in range(200)]
    sizes = [len(orjson.dumps(p)) for p in pods]
    assert 2000 <= min(sizes) and max(sizes) <= 6500, (min(sizes), max(sizes))
    assert objects.make_pod(random.Random(5), "ns", "p5", owner=owner) == pods[5]
    ref = pods[0]["metadata"]["ownerReferences"][0]
    assert ref["controller"] is True and ref["uid"] == "u-1"
    assert pods[0]["status"]["containerStatuses"] and pods[0]["spec"]["containers"][0]["livenessProbe"]


def test_parse_counts() -> None:
    assert parse_counts("pods=10, nodes=2") == {"pods": 10, "nodes": 2}


async def test_generate_builds_an_ownership_chain(http: aiohttp.ClientSession) -> None:
    async with running(generate={"deployments": 2, "pods": 6, "nodes": 1}, seed=3) as server:
        _, rs = await call(http, "GET", server.url + "/apis/apps/v1/replicasets")
        _, deploys = await call(http, "GET", server.url + "/apis/apps/v1/deployments")
        _, pods = await call(http, "GET", server.url + "/api/v1/pods")
        deploy_uids = {d["metadata"]["uid"] for d in deploys["items"]}
        rs_uids = {r["metadata"]["uid"] for r in rs["items"]}
        assert {r["metadata"]["ownerReferences"][0]["uid"] for r in rs["items"]} == deploy_uids
        assert {p["metadata"]["ownerReferences"][0]["uid"] for p in pods["items"]} == rs_uids
        assert {p["spec"]["nodeName"] for p in pods["items"]} == {"node-000"}


async def _run_load(seed: int) -> tuple[list[tuple[str, str, str]], dict[str, int]]:
    async with running(config=fast_config()) as server:
        gen = LoadGenerator(server.url, rate=2000, seed=seed, concurrency=1)
        stats = await gen.run(10.0, max_ops=80)
        shape = sorted((o["resource"], o["namespace"], o["name"]) for o in server.sim.dump()
                       if o["namespace"].startswith("load-"))
        return shape, stats.as_json()


async def test_load_generator_is_deterministic_by_seed() -> None:
    first, stats = await _run_load(11)
    assert stats["creates"] > 20 and stats["updates"] > 5 and stats["errors"] == 0
    kinds = {resource for resource, _, _ in first}
    assert {"pods", "deployments", "replicasets", "events"} <= kinds
    second, _ = await _run_load(11)
    assert first == second
    third, _ = await _run_load(12)
    assert first != third


async def test_load_events_reach_a_watcher(sim: SimServer, http: aiohttp.ClientSession) -> None:
    _, listed = await call(http, "GET", sim.url + "/api/v1/pods")
    gen = LoadGenerator(sim.url, rate=200, seed=1, concurrency=4)
    await gen.run(0.3)
    async with http.get(sim.url + "/api/v1/pods", params={
            "watch": "1", "resourceVersion": listed["metadata"]["resourceVersion"],
            "timeoutSeconds": "0.3"}) as resp:
        lines = (await resp.read()).splitlines()
    types = {orjson.loads(line)["type"] for line in lines}
    assert "ADDED" in types and "MODIFIED" in types
