"""Field selectors on objects that lack the field: the value kube-apiserver reads for them.

kube-apiserver selects on its typed objects, where a boolean or integer left out of the
JSON is false or 0 (pkg/registry/core/node, core/pod, batch/job strategy.go,
``*ToSelectableFields``). A list (compiled to SQL) and a watch (evaluated in memory) must
agree on it.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from kube.resources import ResourceType
from syncer.ingest import Store
from tests.apiserver.conftest import Api, next_events, node, watching
from tests.factories import NODES, PODS, event, pod

JOBS = ResourceType(group="batch", version="v1", resource="jobs", kind="Job", namespaced=True)


def _cordoned(name: str, rv: int) -> dict[str, Any]:
    return {**node(name, rv), "spec": {"unschedulable": True}}


def _job(name: str, succeeded: int | None) -> dict[str, Any]:
    status = {"succeeded": succeeded} if succeeded is not None else {}
    return {"apiVersion": "batch/v1", "kind": "Job", "status": status,
            "metadata": {"name": name, "namespace": "default", "uid": f"job-{name}", "resourceVersion": "5",
                         "creationTimestamp": "2026-01-02T03:04:05Z"}}


@pytest.fixture
async def stored(pool: asyncpg.Pool) -> Store:
    """One cluster: nodes with and without spec.unschedulable, pods with and without
    spec.hostNetwork, jobs with and without status.succeeded."""
    await pool.execute("INSERT INTO clusters (name, mode) VALUES ('east', 'push')")
    store = Store(pool)
    host = pod("host", 3, spec={"nodeName": "n", "hostNetwork": True, "containers": []})
    contents = ((NODES, [node("plain", 1), _cordoned("cordoned", 2)]),
                (PODS, [pod("plain", 3), host]),
                (JOBS, [_job("fresh", None), _job("done", 2), _job("none", 0)]))
    for rtype, items in contents:
        async with store.snapshot(cluster="east", rtype=rtype) as snap:
            await snap.add(items)
            await snap.end("10")
    return store


async def _names(api: Api, path: str, selector: str) -> list[str]:
    status, body = await api.get(path, fieldSelector=selector)
    assert status == 200, body
    return [i["metadata"]["name"] for i in body["items"]]


@pytest.mark.parametrize(("path", "selector", "names"), [
    ("/api/v1/nodes", "spec.unschedulable=false", ["plain"]),
    ("/api/v1/nodes", "spec.unschedulable!=false", ["cordoned"]),
    ("/api/v1/nodes", "spec.unschedulable=true", ["cordoned"]),
    ("/api/v1/nodes", "spec.unschedulable!=true", ["plain"]),
    ("/api/v1/nodes", "spec.unschedulable=", []),
    ("/api/v1/pods", "spec.hostNetwork=false", ["plain"]),
    ("/api/v1/pods", "spec.hostNetwork!=false", ["host"]),
    ("/api/v1/pods", "spec.hostNetwork=true", ["host"]),
    ("/apis/batch/v1/jobs", "status.successful=0", ["fresh", "none"]),
    ("/apis/batch/v1/jobs", "status.successful!=0", ["done"]),
    ("/apis/batch/v1/jobs", "status.successful=2", ["done"]),
])
async def test_lists_read_a_missing_field_as_its_default(api: Api, stored: Store, path: str, selector: str,
                                                         names: list[str]) -> None:
    assert sorted(await _names(api, path, selector)) == names


async def test_watches_read_a_missing_field_as_its_default(api: Api, stored: Store) -> None:
    _, body = await api.get("/api/v1/nodes", limit="1")
    rv = body["metadata"]["resourceVersion"]
    async with watching(api, "/api/v1/nodes", resourceVersion=rv,
                        fieldSelector="spec.unschedulable=false") as nodes, \
            watching(api, "/api/v1/pods", resourceVersion=rv, fieldSelector="spec.hostNetwork!=true") as pods:
        await stored.apply_batch(cluster="east", rtype=NODES, events=[
            event("ADDED", node("joined", 20)), event("MODIFIED", _cordoned("joined", 21)),
            event("MODIFIED", node("joined", 22))])
        await stored.apply_batch(cluster="east", rtype=PODS, events=[event("ADDED", pod("other", 23))])
        got = [(e["type"], e["object"]["metadata"]["name"]) for e in await next_events(nodes, 3)]
        assert got == [("ADDED", "joined"), ("DELETED", "joined"), ("ADDED", "joined")]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in await next_events(pods, 1)] == [
            ("ADDED", "other")]
