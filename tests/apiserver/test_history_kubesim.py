"""History and asOf against a recorded sequence of changes made to kubesim clusters.

Two kubesim clusters are synced by the same informers pull mode runs. The test changes
objects in them, waits until each change is stored, and at every step records the
server's time and what the clusters themselves list. Then an object's history must
reproduce each recorded state (its patches, applied in turn, too), and a list ``asOf``
each recorded time must equal what the clusters listed then.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest_asyncio

from agent.selection import Selection
from apiserver.patches import equal
from apiserver.times import rfc3339
from tests.apiserver.fleet import Fleet, simulated, synced
from tests.patching import apply_patch

CM = "/api/v1/namespaces/{ns}/configmaps"
MERGE = "application/merge-patch+json"
NS = "ns-000"
JSON = dict[str, Any]


@dataclass
class Recorder:
    fleet: Fleet
    marks: list[tuple[datetime, dict[tuple[str, str, str], JSON]]] = field(default_factory=list)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.fleet.pool

    async def stored(self, cluster: str, namespace: str, name: str, rv: str | None) -> None:
        """Until the store holds this version of the object (None: holds no such object)."""
        for _ in range(600):
            found = await self.pool.fetchval(
                "SELECT resource_version FROM resources WHERE cluster = $1 AND resource = 'configmaps'"
                " AND namespace = $2 AND name = $3", cluster, namespace, name)
            if found == rv:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{cluster}/{namespace}/{name} not stored at {rv}")

    async def change(self, cluster: str, method: str, name: str, body: Any = None, *,
                     namespace: str = NS) -> JSON:
        """Make a change in a cluster and wait until it is stored; returns the object."""
        path = CM.format(ns=namespace) + ("" if method == "POST" else f"/{name}")
        obj = await self.fleet.sim(cluster, method, path, body,
                                   MERGE if method == "PATCH" else "application/json")
        gone = method == "DELETE"
        await self.stored(cluster, namespace, name, None if gone else obj["metadata"]["resourceVersion"])
        return obj

    async def mark(self) -> str:
        """The server's time now, and what every cluster lists now."""
        truth = {}
        for cluster in self.fleet.sims:
            for item in await self.fleet.sim_items(cluster, "/api/v1/configmaps"):
                meta = item["metadata"]
                truth[(cluster, meta["namespace"], meta["name"])] = item
        moment: datetime = await self.pool.fetchval("SELECT clock_timestamp()")
        self.marks.append((moment, truth))
        return rfc3339(moment)

    async def get(self, path: str, **params: str) -> tuple[int, JSON]:
        async with self.fleet.session.get(self.fleet.api + path, params=params) as resp:
            body: JSON = await resp.json()
            return resp.status, body


@pytest_asyncio.fixture
async def recorder(db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[Recorder]:
    selection = Selection(include=("configmaps", "deployments.apps"))
    async with simulated({"namespaces": 2, "configmaps": 6, "deployments": 2, "pods": 2}) as sims:
        async with synced(sims, db_url=db_url, pool=pool, tmp=tmp_path, counted="configmaps",
                          selection=selection) as fleet:
            yield Recorder(fleet=fleet)


def _cm(name: str, data: dict[str, str], **labels: str) -> JSON:
    return {"metadata": {"name": name, "labels": labels}, "data": data}


def _same_state(stored: JSON, recorded: JSON) -> None:
    """Equal but for what the store prunes (managedFields) and the cluster annotations."""
    def comparable(obj: JSON) -> JSON:
        meta = dict(obj["metadata"])
        meta.pop("managedFields", None)
        annotations = {k: v for k, v in (meta.pop("annotations", None) or {}).items()
                       if k not in ("kubepedia.io/cluster", "shadow.clusterpedia.io/cluster-name")}
        if annotations:
            meta["annotations"] = annotations
        return {**obj, "metadata": meta}

    assert equal(comparable(stored), comparable(recorded)), (stored, recorded)


async def _play(rec: Recorder) -> list[JSON]:
    """The recorded changes; returns the states of east/ns-000/hist as they were made."""
    states = []
    await rec.mark()
    states.append(await rec.change("east", "POST", "hist", _cm("hist", {"v": "1"}, stage="one")))
    await rec.change("west", "POST", "doomed", {"metadata": {"name": "doomed"}, "data": {"v": "x"}})
    await rec.mark()
    states.append(await rec.change("east", "PATCH", "hist", {"data": {"v": "2"}, "metadata": {
        "labels": {"stage": "two"}}}))
    await rec.change("west", "POST", "elsewhere", _cm("elsewhere", {"v": "y"}), namespace="ns-001")
    await rec.mark()
    states.append(await rec.change("east", "PATCH", "hist", {"data": {"v": "3", "extra": "e"}}))
    await rec.change("west", "DELETE", "doomed")
    await rec.mark()
    await rec.change("east", "DELETE", "hist")
    await rec.mark()
    states.append(await rec.change("east", "POST", "hist", _cm("hist", {"v": "again"}, stage="new")))
    await rec.mark()
    return states


async def test_history_and_as_of_match_what_the_clusters_showed(recorder: Recorder) -> None:
    rec = recorder
    made = await _play(rec)
    await _object_history(rec, made)
    await _namespace_changes(rec)
    for moment, truth in rec.marks:
        await _as_of(rec, moment, truth)


async def _object_history(rec: Recorder, made: list[JSON]) -> None:
    status, body = await rec.get("/kubepedia/v1/history/object", cluster="east", resource="configmaps",
                                 namespace=NS, name="hist")
    assert status == 200, body
    items = body["items"]
    assert [i["type"] for i in items] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED", "ADDED"]
    seqs = [i["seq"] for i in items]
    assert seqs == sorted(seqs) and int(body["metadata"]["resourceVersion"]) >= seqs[-1]
    # Each change's object is the state it made; a deletion carries the last state.
    expected = [made[0], made[1], made[2], made[2], made[3]]
    for item, state in zip(items, expected, strict=True):
        _same_state(item["object"], state)
        assert item["uid"] == state["metadata"]["uid"]
        if item["type"] != "DELETED":  # a deletion has a version of its own in the member cluster
            assert item["resourceVersion"] == state["metadata"]["resourceVersion"]
    assert items[0]["uid"] != items[-1]["uid"], "a new object of the same name"
    # The patches, applied in turn, make each next version.
    version: Any = None
    for item in items:
        if item["patch"] is None:
            assert item["type"] == "DELETED"
            version = None
            continue
        version = apply_patch(version if version is not None else {}, item["patch"])
        assert equal(version, item["object"])
    lines = items[2]["diff"].splitlines()
    assert {"-  v: '2'", "+  v: '3'", "+  extra: e"} <= set(lines)
    assert lines[:2] == [f"--- east/{NS}/hist (before change {items[2]['seq']})",
                         f"+++ east/{NS}/hist (after change {items[2]['seq']})"]
    assert all(line.startswith(("---", "+++", "@@", "-")) for line in items[3]["diff"].splitlines())
    times = [i["time"] for i in items]
    assert times == sorted(times)
    # In pages of two: the same entries.
    walked, params = [], {"cluster": "east", "resource": "configmap", "namespace": NS, "name": "hist",
                          "limit": "2"}
    while True:
        status, page = await rec.get("/kubepedia/v1/history/object", **params)
        assert status == 200, page
        walked += page["items"]
        if not page["metadata"].get("continue"):
            break
        params["continue"] = page["metadata"]["continue"]
    assert walked == items


async def _namespace_changes(rec: Recorder) -> None:
    since = rfc3339(rec.marks[0][0])
    status, body = await rec.get("/kubepedia/v1/history/changes", namespace=NS, since=since)
    assert status == 200, body
    assert [(i["type"], i["cluster"], i["name"]) for i in body["items"]] == [
        ("ADDED", "east", "hist"), ("ADDED", "west", "doomed"), ("MODIFIED", "east", "hist"),
        ("MODIFIED", "east", "hist"), ("DELETED", "west", "doomed"), ("DELETED", "east", "hist"),
        ("ADDED", "east", "hist")]
    assert {i["kind"] for i in body["items"]} == {"ConfigMap"}
    window = {"since": rfc3339(rec.marks[1][0]), "before": rfc3339(rec.marks[3][0])}
    status, body = await rec.get("/kubepedia/v1/history/changes", clusters="west,east", types="cm,deploy",
                                 **window)
    assert [(i["type"], i["name"]) for i in body["items"]] == [
        ("MODIFIED", "hist"), ("ADDED", "elsewhere"), ("MODIFIED", "hist"), ("DELETED", "doomed")]
    status, body = await rec.get("/kubepedia/v1/history/changes", clusters="west", changeTypes="deleted",
                                 since=since)
    assert [(i["type"], i["name"]) for i in body["items"]] == [("DELETED", "doomed")]


async def _as_of(rec: Recorder, moment: datetime, truth: dict[tuple[str, str, str], JSON]) -> None:
    when = rfc3339(moment)
    status, body = await rec.get("/api/v1/configmaps", asOf=when)
    assert status == 200, body
    got = {(i["metadata"]["annotations"]["kubepedia.io/cluster"], i["metadata"]["namespace"],
            i["metadata"]["name"]): i for i in body["items"]}
    assert sorted(got) == sorted(truth), when
    for key, item in got.items():
        _same_state(item, truth[key])
    seq = await rec.pool.fetchval("SELECT max(seq) FROM change_log WHERE at <= $1", moment)
    assert body["metadata"]["resourceVersion"] == str(seq)
    # One cluster, one namespace, a selector, and pages: the same state, narrowed.
    status, body = await rec.get(f"/clusters/east{CM.format(ns=NS)}", asOf=when, labelSelector="stage")
    assert status == 200, body
    assert sorted(i["metadata"]["name"] for i in body["items"]) == sorted(
        name for (c, ns, name), obj in truth.items()
        if c == "east" and ns == NS and "stage" in (obj["metadata"].get("labels") or {}))
    # A GET by name, as of then: a field selector on the states.
    status, body = await rec.get(f"/clusters/east{CM.format(ns=NS)}", asOf=when,
                                 fieldSelector="metadata.name=hist")
    hist = truth.get(("east", NS, "hist"))
    assert status == 200 and [i["data"] for i in body["items"]] == ([hist["data"]] if hist else [])
    # A negative selector, on states with no labels at all too.
    status, body = await rec.get("/clusters/west/api/v1/configmaps", asOf=when, labelSelector="!stage")
    assert sorted(i["metadata"]["name"] for i in body["items"]) == sorted(
        name for (c, _, name), obj in truth.items()
        if c == "west" and "stage" not in (obj["metadata"].get("labels") or {}))
    walked, params = [], {"asOf": when, "limit": "3"}
    while True:
        status, page = await rec.get("/api/v1/configmaps", **params)
        assert status == 200, page
        assert page["metadata"]["resourceVersion"] == str(seq)
        walked += page["items"]
        if not page["metadata"].get("continue"):
            break
        params["continue"] = page["metadata"]["continue"]
    assert walked == list(got.values())
