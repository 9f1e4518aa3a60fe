"""The history API and asOf over real HTTP: pages, windows, the caller's scope, versions,
and every bad parameter answered with a 400 (or 410) Status."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest_asyncio

from apiserver.app import build_app
from apiserver.query import Scope
from apiserver.times import rfc3339
from kube.resources import ResourceType
from syncer.ingest import Store
from tests.access import AUTH, granted
from tests.apiserver.conftest import Api, deployment
from tests.factories import DEPLOYMENTS, PODS, event
from tests.serving import serve_app

Synced = dict[str, list[dict[str, Any]]]
HISTORY = "/kubepedia/v1/history/object"
CHANGES = "/kubepedia/v1/history/changes"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


async def _now(pool: asyncpg.Pool) -> str:
    return rfc3339(await pool.fetchval("SELECT clock_timestamp()"))


def _changed(base: dict[str, Any], rv: int, **labels: str) -> dict[str, Any]:
    meta = {**base["metadata"], "resourceVersion": str(rv),
            "labels": {**base["metadata"]["labels"], **labels}}
    return {**base, "metadata": meta}


async def _walk(api: Api, path: str, **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        status, body = await api.get(path, **params)
        assert status == 200, body
        items += body["items"]
        if not body["metadata"].get("continue"):
            return items
        params["continue"] = body["metadata"]["continue"]


async def test_an_object_across_clusters_in_pages(api: Api, filled: Synced, pool: asyncpg.Pool) -> None:
    store = Store(pool)
    target = filled["east"][4]
    name, ns = target["metadata"]["name"], target["metadata"]["namespace"]
    for rv in (500, 501):
        await store.apply_batch(cluster="east", rtype=PODS, events=[event("MODIFIED", _changed(target, rv,
                                                                                              step=str(rv)))])
    await store.apply_batch(cluster="west", rtype=PODS, events=[event("DELETED", filled["west"][4])])
    status, body = await api.get(HISTORY, resource="pod", namespace=ns, name=name)  # a singular
    assert status == 200, body
    assert [(i["cluster"], i["type"]) for i in body["items"]] == [
        ("east", "ADDED"), ("west", "ADDED"), ("edge", "ADDED"), ("east", "MODIFIED"), ("east", "MODIFIED"),
        ("west", "DELETED")]
    assert [i["object"]["metadata"]["labels"].get("step") for i in body["items"][3:5]] == ["500", "501"]
    assert sorted(body["items"][3]["patch"], key=lambda op: op["path"]) == [
        {"op": "add", "path": "/metadata/labels/step", "value": "500"},
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "500"}]
    assert await _walk(api, HISTORY, resource="pods", group="", namespace=ns, name=name, limit="4") == \
        body["items"]
    status, east = await api.get(HISTORY, resource="Pod", namespace=ns, name=name, cluster="east")
    assert [i["cluster"] for i in east["items"]] == ["east"] * 3
    status, none = await api.get(HISTORY, resource="pods", namespace=ns, name="never-was")
    assert (status, none["items"]) == (200, [])


async def test_changes_in_windows_and_pages(api: Api, filled: Synced, pool: asyncpg.Pool) -> None:
    store = Store(pool)
    before_all = await _now(pool)
    for i, target in enumerate(filled["edge"][:6]):
        await store.apply_batch(cluster="edge", rtype=PODS,
                                events=[event("MODIFIED", _changed(target, 900 + i))])
    middle = await _now(pool)
    await store.apply_batch(cluster="edge", rtype=DEPLOYMENTS,
                            events=[event("DELETED", deployment("api", "web", 7))])
    everything = await _walk(api, CHANGES, since=before_all)
    assert [(i["type"], i["resource"]) for i in everything] == [("MODIFIED", "pods")] * 6 + [
        ("DELETED", "deployments")]
    assert await _walk(api, CHANGES, since=before_all, limit="2") == everything
    status, body = await api.get(CHANGES, since=before_all, before=middle)
    assert [i["seq"] for i in body["items"]] == [i["seq"] for i in everything[:6]]
    status, body = await api.get(CHANGES, since=middle, types="deployments.apps", changeTypes="DELETED",
                                 clusters="edge", namespace="web")
    assert [i["name"] for i in body["items"]] == ["api"]
    status, body = await api.get(CHANGES, before="2020-01-01")
    assert (status, body["items"]) == (200, [])
    status, body = await api.get(CHANGES, since="2999-01-01")
    assert (status, body["items"]) == (200, [])
    # A walk stops where its first page stood: later changes are for a watch from there.
    status, first = await api.get(CHANGES, since=before_all, limit="3")
    await store.apply_batch(cluster="edge", rtype=PODS,
                            events=[event("MODIFIED", _changed(filled["edge"][7], 999))])
    status, rest = await api.get(CHANGES, since=before_all, limit="100",
                                 **{"continue": first["metadata"]["continue"]})
    assert [i["seq"] for i in first["items"] + rest["items"]] == [i["seq"] for i in everything]
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


BAD = [
    (HISTORY, {"namespace": "web", "name": "a"}),  # no resource
    (HISTORY, {"resource": "pods", "namespace": "web"}),  # no name
    (HISTORY, {"resource": "pods", "name": "a/b"}),
    (HISTORY, {"resource": "pods", "name": "a\x01"}),
    (HISTORY, {"resource": "pods", "name": "a", "namespace": "Not_A_Namespace"}),
    (HISTORY, {"resource": "pods", "name": "a", "cluster": "UPPER"}),
    (HISTORY, {"resource": "no/such", "name": "a"}),
    (HISTORY, {"resource": "Pods_", "name": "a"}),
    (HISTORY, {"resource": "pods", "group": "Bad_Group", "name": "a"}),
    (HISTORY, {"resource": "pods", "name": "a", "limit": "-1"}),
    (HISTORY, {"resource": "pods", "name": "a", "limit": "\u00b2"}),
    (HISTORY, {"resource": "pods", "name": "a", "continue": "garbage"}),
    (CHANGES, {"since": "yesterday"}),
    (CHANGES, {"before": "2026-02-30"}),
    (CHANGES, {"since": "2026-01-02", "before": "2026-01-01"}),
    (CHANGES, {"since": "2026-01-02", "before": "2026-01-02"}),
    (CHANGES, {"changeTypes": "ADDED,CREATED"}),
    (CHANGES, {"changeTypes": ""}),
    (CHANGES, {"types": "pods,Bad Type"}),
    (CHANGES, {"types": ",".join(f"t{i}" for i in range(101))}),
    (CHANGES, {"clusters": "east,UPPER"}),
    (CHANGES, {"namespace": "a.b"}),
    (CHANGES, {"limit": "many"}),
    (CHANGES, {"continue": "x.y"}),
    ("/api/v1/pods", {"asOf": "yesterday"}),
    ("/api/v1/pods", {"asOf": "2999-01-01"}),  # the future
    ("/api/v1/pods", {"asOf": "2026-01-01", "watch": "1"}),
    ("/api/v1/pods", {"asOf": "2026-01-01", "resourceVersion": "5"}),
    ("/api/v1/pods", {"asOf": "2026-01-01", "limit": "x"}),
    ("/api/v1/pods", {"asOf": "2026-01-01", "labelSelector": "a in b"}),
    ("/api/v1/pods", {"asOf": "2026-01-01", "limit": "2", "continue": "x"}),
    ("/api/v1/namespaces/web/pods/web-001", {"asOf": "2026-01-01"}),  # a GET
]


async def test_bad_parameters_are_400(api: Api, filled: Synced) -> None:
    for path, params in BAD:
        status, body = await api.get(path, **params)
        assert (status, body["kind"], body["reason"]) == (400, "Status", "BadRequest"), (path, params, body)


async def test_tokens_belong_to_their_query(api: Api, filled: Synced, pool: asyncpg.Pool) -> None:
    since = "2000-01-01"
    status, page = await api.get(CHANGES, since=since, limit="2")
    token = page["metadata"]["continue"]
    status, body = await api.get(CHANGES, since=since, limit="2", namespace="web", **{"continue": token})
    assert status == 400 and "belong" in body["message"]
    status, page = await api.get("/api/v1/pods", limit="2")
    status, body = await api.get("/api/v1/pods", limit="2", asOf=await _now(pool),
                                 **{"continue": page["metadata"]["continue"]})
    assert status == 400, "a live list's token is not an asOf list's"
    status, page = await api.get(HISTORY, resource="pods", namespace="web", name="web-000", limit="1")
    status, body = await api.get(HISTORY, resource="pods", namespace="web", name="web-001", limit="1",
                                 **{"continue": page["metadata"]["continue"]})
    assert status == 400


async def test_as_of_before_the_retained_log_is_expired(api: Api, filled: Synced, pool: asyncpg.Pool) -> None:
    status, body = await api.get("/api/v1/pods", asOf="2020-01-01T00:00:00Z")
    assert (status, body["reason"]) == (410, "Expired"), body
    when = await _now(pool)
    await Store(pool).apply_batch(cluster="east", rtype=PODS, events=[event("DELETED", filled["east"][0])])
    status, page = await api.get("/api/v1/pods", asOf=when, limit="5")
    assert status == 200 and page["metadata"]["continue"]
    # Pruned past the list's sequence while it is walked: the next page cannot be right.
    await pool.execute("DELETE FROM change_log WHERE seq <= $1", int(page["metadata"]["resourceVersion"]))
    status, body = await api.get("/api/v1/pods", asOf=when, limit="5",
                                 **{"continue": page["metadata"]["continue"]})
    assert (status, body["reason"]) == (410, "Expired"), body
    status, body = await api.get("/api/v1/pods", asOf=when)
    assert (status, body["reason"]) == (410, "Expired"), body


async def test_as_of_tables_cluster_scoped_types_and_groups(api: Api, filled: Synced,
                                                            pool: asyncpg.Pool) -> None:
    when = await _now(pool)
    store = Store(pool)
    await store.apply_batch(cluster="edge", rtype=DEPLOYMENTS,
                            events=[event("DELETED", deployment("only", "web", 9))])
    status, body = await api.get("/apis/apps/v1/namespaces/web/deployments", asOf=when)
    assert sorted((i["metadata"]["annotations"]["kubepedia.io/cluster"], i["metadata"]["name"])
                  for i in body["items"]) == [("east", "api"), ("edge", "api"), ("edge", "only"),
                                              ("west", "api")]
    status, body = await api.get("/apis/apps/v1/namespaces/web/deployments")
    assert "only" not in {i["metadata"]["name"] for i in body["items"]}
    status, body = await api.get("/api/v1/nodes", asOf=when)
    assert status == 200 and len(body["items"]) == 6
    status, body, _ = await api.request("GET", "/clusters/edge/apis/apps/v1/deployments",
                                        params={"asOf": when}, headers={"Accept": TABLE})
    assert body["kind"] == "Table" and [r["cells"][:2] for r in body["rows"]][-1] == ["edge", "only"]


@pytest_asyncio.fixture
async def narrow(db_url: str) -> AsyncIterator[Api]:
    """The API for a caller who may read east's payments namespace only, pods only."""
    app = build_app(database_url=db_url, access=granted(Scope.of(clusters={"east"},
                                                                 namespaces={"payments"},
                                                                 types={("", "pods")})))
    runner, url = await serve_app(app)
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield Api(url=url, session=session)
    await runner.cleanup()


async def test_the_callers_scope_bounds_every_answer(narrow: Api, filled: Synced, pool: asyncpg.Pool) -> None:
    when = await _now(pool)
    status, body = await narrow.get(HISTORY, resource="pods", namespace="payments", name="pay-001")
    assert [i["cluster"] for i in body["items"]] == ["east"]
    status, body = await narrow.get(HISTORY, resource="deployments.apps", namespace="payments", name="api")
    assert body["items"] == []
    status, body = await narrow.get(HISTORY, resource="pods", namespace="web", name="web-001")
    assert body["items"] == []
    changes = await _walk(narrow, CHANGES, since="2000-01-01")
    assert {(i["cluster"], i["namespace"], i["resource"]) for i in changes} == {("east", "payments", "pods")}
    status, body = await narrow.get("/api/v1/pods", asOf=when)
    assert {(i["metadata"]["annotations"]["kubepedia.io/cluster"], i["metadata"]["namespace"])
            for i in body["items"]} == {("east", "payments")}
    # Deleted since: found in the change log, still within the scope only.
    await Store(pool).apply_batch(cluster="west", rtype=PODS, events=[event("DELETED", filled["west"][13])])
    await Store(pool).apply_batch(cluster="east", rtype=PODS, events=[event("DELETED", filled["east"][13])])
    status, again = await narrow.get("/api/v1/pods", asOf=when)
    assert (status, again["items"]) == (200, body["items"])


V1BETA2 = ResourceType(group="apps", version="v1beta2", resource="deployments", kind="Deployment",
                       namespaced=True)


async def test_a_state_is_listed_in_the_version_it_was_stored_in(api: Api, filled: Synced,
                                                                pool: asyncpg.Pool) -> None:
    """North stored its deployment in v1beta2, then in v1: as of before, the v1 list does
    not show it (its state then names v1beta2), and the v1beta2 list does."""
    store = Store(pool)
    await pool.execute("INSERT INTO clusters (name, mode) VALUES ('north', 'push')")
    old = {**deployment("moved", "web", 20), "apiVersion": "apps/v1beta2"}
    await store.apply_batch(cluster="north", rtype=V1BETA2, events=[event("ADDED", old)])
    when = await _now(pool)
    await store.apply_batch(cluster="north", rtype=DEPLOYMENTS,
                            events=[event("MODIFIED", deployment("moved", "web", 21))])

    async def listed(version: str, at: str | None) -> list[str]:
        params = {"asOf": at} if at else {}
        status, body = await api.get(f"/apis/apps/{version}/namespaces/web/deployments", **params)
        assert status == 200, body
        return [i["apiVersion"] for i in body["items"] if i["metadata"]["name"] == "moved"]

    assert await listed("v1", None) == ["apps/v1"]
    assert await listed("v1", when) == []
    assert await listed("v1beta2", when) == ["apps/v1beta2"]


WIDGETS = [ResourceType(group=group, version="v1", resource="widgets", kind="Widget", namespaced=True)
           for group in ("a.example", "b.example")]
POD_METRICS = ResourceType(group="metrics.k8s.io", version="v1beta1", resource="pods", kind="PodMetrics",
                           namespaced=True)


async def test_types_as_kubectl_users_name_them(api: Api, filled: Synced, pool: asyncpg.Pool) -> None:
    store = Store(pool)
    for rtype in WIDGETS:
        widget = {"apiVersion": f"{rtype.group}/v1", "kind": "Widget",
                  "metadata": {"name": "w", "namespace": "web", "uid": f"w-{rtype.group}",
                               "resourceVersion": "1"}}
        await store.apply_batch(cluster="east", rtype=rtype, events=[event("ADDED", widget)])
    metrics = {"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
               "metadata": {"name": "m", "namespace": "web", "uid": "m", "resourceVersion": "1"}}
    await store.apply_batch(cluster="east", rtype=POD_METRICS, events=[event("ADDED", metrics)])
    status, body = await api.get(CHANGES, types="widgets")
    assert (status, body["reason"]) == (400, "BadRequest") and "widgets.a.example" in body["message"]
    status, body = await api.get(CHANGES, types="widgets.b.example,Deployment")
    assert {(i["group"], i["resource"]) for i in body["items"]} == {("b.example", "widgets"),
                                                                    ("apps", "deployments")}
    status, body = await api.get(HISTORY, resource="widget", group="a.example", namespace="web", name="w")
    assert [i["uid"] for i in body["items"]] == ["w-a.example"]
    # "pods" is the core group's, as kubectl reads it, though metrics.k8s.io serves pods too.
    status, body = await api.get(CHANGES, types="pods", namespace="web", clusters="east")
    assert status == 200 and {i["kind"] for i in body["items"]} == {"Pod"}
    status, body = await api.get(CHANGES, types="pods.metrics.k8s.io")
    assert [i["kind"] for i in body["items"]] == ["PodMetrics"]
    # A type no cluster serves any more keeps its history under its own name.
    status, body = await api.get(CHANGES, types="gadgets.gone.example")
    assert (status, body["items"]) == (200, [])


async def test_a_state_not_kept_is_left_out_not_null(api: Api, filled: Synced, pool: asyncpg.Pool) -> None:
    """Entries written before the change log kept before-images have none: the object's
    state then is unknown, and an asOf list leaves it out rather than listing null."""
    when = await _now(pool)
    target = filled["east"][0]
    await Store(pool).apply_batch(cluster="east", rtype=PODS,
                                  events=[event("MODIFIED", _changed(target, 700))])
    await pool.execute("UPDATE change_log SET object = NULL WHERE seq = (SELECT max(seq) FROM change_log)")
    status, body = await api.get("/clusters/east/api/v1/pods", asOf=when)
    assert status == 200 and None not in body["items"]
    assert target["metadata"]["name"] not in {i["metadata"]["name"] for i in body["items"]}
