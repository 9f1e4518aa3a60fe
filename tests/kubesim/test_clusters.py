"""Many clusters from one process: each is a member cluster of its own (objects,
resourceVersions, watches, faults, port), checked over real HTTP and with kubectl."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from kubesim.clusters import cluster_names, running_clusters
from kubesim.generate import cluster_counts, copy_objects
from kubesim.server import SimServer
from kubesim.simulator import Simulator
from tests.kubesim.conftest import Kubectl, call, fast_config, pod_body, watch_lines

JSON = dict[str, Any]
PODS = "/api/v1/pods"
DEFAULT_PODS = "/api/v1/namespaces/default/pods"
GENERATE = {"namespaces": 2, "nodes": 2, "deployments": 2, "pods": 12, "events": 3}


@pytest.fixture
async def pair() -> AsyncIterator[list[SimServer]]:
    async with running_clusters(
        2, generate=GENERATE, seed=7, config=fast_config(name="edge")
    ) as servers:
        yield servers


async def _items(http: aiohttp.ClientSession, url: str) -> list[JSON]:
    status, body = await call(http, "GET", url)
    assert status == 200, body
    items: list[JSON] = body["items"]
    return items


async def _rv(http: aiohttp.ClientSession, sim: SimServer) -> int:
    _, body = await call(http, "GET", sim.url + PODS)
    return int(body["metadata"]["resourceVersion"])


def test_names_are_numbered_to_sort_in_order() -> None:
    assert cluster_names("east", 1) == ["east"]
    assert cluster_names("east", 3) == ["east-0", "east-1", "east-2"]
    assert cluster_names("east", 11)[:2] == ["east-00", "east-01"]


def test_cluster_counts_add_up() -> None:
    counts = cluster_counts(1000)
    # 4 system namespaces and a ReplicaSet per Deployment come on top of the counts.
    assert sum(counts.values()) + counts["deployments"] + 4 == 1000
    assert counts["pods"] > 800


async def test_copies_have_the_same_objects_with_uids_of_their_own(
    pair: list[SimServer], http: aiohttp.ClientSession
) -> None:
    one, two = pair
    assert [s.sim.config.name for s in pair] == ["edge-0", "edge-1"]
    assert one.port != two.port
    by_cluster = []
    for sim in pair:
        pods = await _items(http, sim.url + PODS)
        replicasets = await _items(http, sim.url + "/apis/apps/v1/replicasets")
        rs_uids = {r["metadata"]["uid"] for r in replicasets}
        # Owner references point at the ReplicaSets of the same cluster.
        assert {p["metadata"]["ownerReferences"][0]["uid"] for p in pods} == rs_uids
        by_cluster.append(pods)
    names = [[p["metadata"]["name"] for p in pods] for pods in by_cluster]
    assert names[0] == names[1] and len(names[0]) == 12
    uids = [{p["metadata"]["uid"] for p in pods} for pods in by_cluster]
    assert not uids[0] & uids[1]
    events = await _items(http, two.url + "/api/v1/events")
    assert len(events) == 3
    assert one.sim.dump() != two.sim.dump()


async def test_writes_and_versions_stay_in_their_cluster(
    pair: list[SimServer], http: aiohttp.ClientSession
) -> None:
    one, two = pair
    rv_one, rv_two = await _rv(http, one), await _rv(http, two)
    status, created = await call(http, "POST", one.url + DEFAULT_PODS, pod_body("only-one"))
    assert status == 201
    assert int(created["metadata"]["resourceVersion"]) == rv_one + 1
    assert await _rv(http, two) == rv_two
    status, _ = await call(http, "GET", two.url + DEFAULT_PODS + "/only-one")
    assert status == 404
    assert "only-one" not in {p["metadata"]["name"] for p in await _items(http, two.url + PODS)}
    # The same name can be created in the other cluster: its own object, its own version.
    status, other = await call(http, "POST", two.url + DEFAULT_PODS, pod_body("only-one"))
    assert status == 201 and other["metadata"]["uid"] != created["metadata"]["uid"]
    assert int(other["metadata"]["resourceVersion"]) == rv_two + 1


async def test_a_watch_gets_only_its_clusters_events(
    pair: list[SimServer], http: aiohttp.ClientSession
) -> None:
    one, two = pair
    rvs = [await _rv(http, sim) for sim in pair]
    watches = [
        asyncio.create_task(watch_lines(http, sim.url + PODS, count=2, resourceVersion=rv))
        for sim, rv in zip(pair, rvs, strict=True)
    ]
    await call(http, "POST", one.url + DEFAULT_PODS, pod_body("in-one"))
    await call(http, "POST", two.url + DEFAULT_PODS, pod_body("in-two"))
    await call(http, "DELETE", one.url + DEFAULT_PODS + "/in-one")
    await call(http, "DELETE", two.url + DEFAULT_PODS + "/in-two")
    seen = await asyncio.gather(*watches)
    for events, name, rv in zip(seen, ("in-one", "in-two"), rvs, strict=True):
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
            ("ADDED", name), ("DELETED", name)]
        # Each cluster's own counter: the next two versions after its list's.
        assert [int(e["object"]["metadata"]["resourceVersion"]) for e in events] == [rv + 1, rv + 2]


async def test_faults_and_compaction_stay_in_their_cluster(
    pair: list[SimServer], http: aiohttp.ClientSession
) -> None:
    one, two = pair
    rv_two = await _rv(http, two)
    await call(http, "POST", one.url + "/_kubesim/fail", count=1, code=503)
    await call(http, "POST", one.url + "/_kubesim/compact")
    status, _ = await call(http, "GET", two.url + PODS)
    assert status == 200
    status, _ = await call(http, "GET", one.url + PODS)
    assert status == 503
    await call(http, "POST", two.url + DEFAULT_PODS, pod_body("after"))
    events = await watch_lines(http, two.url + PODS, count=1, resourceVersion=rv_two)
    assert events[0]["type"] == "ADDED"


def test_copies_rebind_an_events_involved_object() -> None:
    """An Event about a pod names the copy's pod in the copy, selectable field included."""
    source, target = Simulator(), Simulator()
    pods = source.registry.by_key("pods")
    events = source.registry.by_key("events")
    assert pods is not None and events is not None
    pod = source.api.create(pods, "default", pod_body("p"), record=False)
    event = {"metadata": {"name": "e"}, "reason": "Started",
             "involvedObject": {"kind": "Pod", "name": "p", "uid": pod.uid}}
    source.api.create(events, "default", event, record=False)
    copy_objects(source.api, target.api)
    copied_pod = target.api.get(pods, "default", "p")
    copied_event = target.api.get(events, "default", "e")
    assert copied_pod.uid != pod.uid
    assert copied_event.fields["involvedObject.uid"] == copied_pod.uid
    assert source.api.get(events, "default", "e").fields["involvedObject.uid"] == pod.uid


async def _serve(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubesim", "serve", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.slow
async def test_serve_many_clusters_from_one_process(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    listing, ports = tmp_path / "clusters.json", tmp_path / "ports"
    proc = await _serve(
        "--clusters", "2", "--name", "west", "--objects-per-cluster", "60", "--seed", "3",
        "--listing-out", str(listing), "--kubeconfig-dir", str(tmp_path / "kubeconfigs"),
        "--kubeconfig-out", str(tmp_path / "all.kubeconfig"), "--port-file", str(ports),
    )
    assert proc.stdout is not None
    try:
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 30)).decode() for _ in range(2)]
        urls = [line.rsplit("serving on ", 1)[1].strip() for line in lines]
        assert [line.split()[1] for line in lines] == ["west-0", "west-1"]
        clusters = orjson.loads(listing.read_bytes())["clusters"]
        assert [c["url"] for c in clusters] == urls
        assert [int(p) for p in ports.read_text().split()] == [c["port"] for c in clusters]
        combined = yaml.safe_load((tmp_path / "all.kubeconfig").read_text())
        assert [c["cluster"]["server"] for c in combined["clusters"]] == urls
        for url in urls:
            assert len(await _items(http, url + "/api/v1/pods")) == len(
                await _items(http, urls[0] + "/api/v1/pods"))
        kubectl = Kubectl(Path(clusters[1]["kubeconfig"]), tmp_path / "cache")
        manifest = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: only-west-1}\ndata: {a: b}\n"
        assert "created" in await kubectl.run("apply", "-f", "-", stdin=manifest)
        names = (await kubectl.run("get", "configmaps", "-o", "name")).split()
        assert names == ["configmap/only-west-1"]
        status, _ = await call(http, "GET", urls[0] + "/api/v1/namespaces/default/configmaps/only-west-1")
        assert status == 404
        everywhere = Kubectl(tmp_path / "all.kubeconfig", tmp_path / "cache-all")
        assert "only-west-1" not in await everywhere.run("--context", "west-0", "get", "cm")
        assert "only-west-1" in await everywhere.run("--context", "west-1", "get", "cm")
    finally:
        proc.terminate()
        assert await proc.wait() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--clusters", "0"), "--clusters must be from 1"),
        (("--generate", "pods=1", "--objects-per-cluster", "5"), "exclude each other"),
        (("--churn", "-1"), "--churn must be from 0"),
        (("--clusters", "3", "--port", "65534"), "past port 65535"),
    ],
)
async def test_serve_refuses_bad_options(args: tuple[str, ...], message: str) -> None:
    proc = await _serve(*args)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:  # it started serving instead
            proc.kill()
            await proc.wait()
    assert proc.returncode == 2 and message in err.decode()

