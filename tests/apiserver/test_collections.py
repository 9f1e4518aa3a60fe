"""Collection resources (``/apis/clusterpedia.io/v1beta1/collectionresources``), checked against
a plain Python filter over the same generated objects: several types (core, apps, batch and
a custom resource) in three clusters, synced through the ingest core."""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import pytest_asyncio
import yaml

from apiserver.app import build_app
from apiserver.collections import KUBE_GROUPS, cursor_key, in_index_order
from apiserver.pagination import Cursor
from apiserver.query import EVERYTHING_SCOPE, Scope, Target, compiled
from apiserver.query_collections import page_statement
from kube.resources import ResourceType
from kube.selectors import parse_label_selector
from kube.status import StatusError
from kubepedia.kubeconfig import document
from kubepedia.tls import CERT_FILE, certificate_pem
from syncer.ingest import Store
from tests.access import TEST_TOKEN, granted
from tests.apiserver.conftest import Api, serving
from tests.apiserver.test_openapi import _answers_as_documented

BASE = "/apis/clusterpedia.io/v1beta1/collectionresources"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
CLUSTERS = ("east", "west", "edge")
NAMESPACES = ("default", "payments", "web")


def _type(group: str, resource: str, kind: str, *, namespaced: bool = True) -> ResourceType:
    return ResourceType(group=group, version="v1", resource=resource, kind=kind, namespaced=namespaced)


PODS = _type("", "pods", "Pod")
CONFIGMAPS = _type("", "configmaps", "ConfigMap")
NODES = _type("", "nodes", "Node", namespaced=False)
DEPLOYMENTS = _type("apps", "deployments", "Deployment")
DAEMONSETS = _type("apps", "daemonsets", "DaemonSet")
STATEFULSETS = _type("apps", "statefulsets", "StatefulSet")
JOBS = _type("batch", "jobs", "Job")
WIDGETS = _type("example.com", "widgets", "Widget")
TYPES = (PODS, CONFIGMAPS, NODES, DEPLOYMENTS, DAEMONSETS, STATEFULSETS, JOBS, WIDGETS)
WORKLOADS = {("apps", "deployments"), ("apps", "daemonsets"), ("apps", "statefulsets")}


@dataclass(frozen=True)
class Stored:
    cluster: str
    rtype: ResourceType
    obj: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        meta = self.obj["metadata"]
        return (self.rtype.group, self.rtype.resource, meta.get("namespace", ""), meta["name"], self.cluster)

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.obj["metadata"]["labels"]
        return labels


def _objects(rng: random.Random) -> Iterator[Stored]:
    """Every type in every cluster but widgets (east only) and jobs (not in edge); names
    repeat across clusters and types, so that the order's later keys decide."""
    for cluster in CLUSTERS:
        for rtype in TYPES:
            if (rtype is WIDGETS and cluster != "east") or (rtype is JOBS and cluster == "edge"):
                continue
            spaces = NAMESPACES if rtype.namespaced else ("",)
            for namespace in spaces:
                for i in range(rng.randint(1, 4)):
                    meta: dict[str, Any] = {
                        "name": f"{rng.choice(('api', 'db', 'web'))}-{i}",
                        "uid": f"{cluster}-{rtype.resource}-{namespace}-{i}",
                        "resourceVersion": str(rng.randint(1, 999)),
                        "creationTimestamp": f"2026-01-0{1 + i}T03:04:05Z",
                        "labels": {"tier": rng.choice(("front", "back")), "app": rng.choice(("a", "b", "c"))}}
                    if namespace:
                        meta["namespace"] = namespace
                    # The sender's own apiVersion is not what a collection says: the row is.
                    yield Stored(cluster, rtype, {"apiVersion": "stale/v0", "kind": rtype.kind,
                                                  "metadata": meta, "spec": {"n": i}})


def _unique(objects: Iterator[Stored]) -> list[Stored]:
    seen: dict[tuple[str, str, str, str, str], Stored] = {}
    for o in objects:
        seen.setdefault(o.key, o)
    return list(seen.values())


OBJECTS = _unique(_objects(random.Random(11)))


async def _load(pool: asyncpg.Pool) -> None:
    store = Store(pool)
    for cluster in CLUSTERS:
        await pool.execute("INSERT INTO clusters (name, mode) VALUES ($1, 'push')", cluster)
        for rtype in TYPES:
            items = [o.obj for o in OBJECTS if o.cluster == cluster and o.rtype == rtype]
            if items:
                async with store.snapshot(cluster=cluster, rtype=rtype) as snap:
                    await snap.add(items)
                    await snap.end("1000")


@pytest_asyncio.fixture
async def loaded(pool: asyncpg.Pool) -> None:
    await _load(pool)


def expected(keep: Callable[[Stored], bool], labels: str = "") -> list[tuple[str, str, str, str, str]]:
    """The plain Python answer: the keys of the objects kept, in the collection's order."""
    parsed = parse_label_selector(labels)  # the search conditions given as labels: ``keep`` has them
    selector = replace(parsed, requirements=tuple(r for r in parsed.requirements
                                                  if "clusterpedia.io/" not in r.key))
    return sorted(o.key for o in OBJECTS if keep(o) and selector.matches(o.labels))


def _key(item: dict[str, Any]) -> tuple[str, str, str, str, str]:
    group, _, _ = item["apiVersion"].rpartition("/")
    meta = item["metadata"]
    kinds = {t.kind: t.resource for t in TYPES}
    return (group, kinds[item["kind"]], meta.get("namespace", ""), meta["name"],
            meta["annotations"]["kubepedia.io/cluster"])


async def walk(api: Api, name: str, limit: int, **params: str) -> list[dict[str, Any]]:
    """Every page of a collection, following continue; asserts each page's shape."""
    items: list[dict[str, Any]] = []
    token = ""
    for _ in range(1000):
        query = {"limit": str(limit), **params, **({"continue": token} if token else {})}
        status, body = await api.get(f"{BASE}/{name}", **query)
        assert status == 200, body
        assert (body["kind"], body["apiVersion"], body["metadata"]["name"]) == (
            "CollectionResource", "clusterpedia.io/v1beta1", name)
        assert len(body["items"]) <= limit
        present = {(t["group"], t["version"], t["resource"], t["kind"]) for t in body["resourceTypes"]}
        on_page = {(*i["apiVersion"].rpartition("/")[::2], _key(i)[1], i["kind"]) for i in body["items"]}
        assert present == on_page and len(present) == len(body["resourceTypes"])
        items += body["items"]
        token = body.get("continue", "")
        if not token:
            return items
    raise AssertionError("the walk does not end")


# -- the list of collections ----------------------------------------------------------------------

async def test_the_list_names_three_collections_with_their_served_types(api: Api, loaded: None) -> None:
    status, body = await api.get(BASE)
    assert status == 200
    assert (body["kind"], body["apiVersion"]) == ("CollectionResourceList", "clusterpedia.io/v1beta1")
    by_name = {i["metadata"]["name"]: i["resourceTypes"] for i in body["items"]}
    assert set(by_name) == {"any", "workloads", "kuberesources"}
    assert by_name["any"] == []
    assert sorted((t["group"], t["version"], t["resource"], t["kind"]) for t in by_name["workloads"]) == [
        ("apps", "v1", "daemonsets", "DaemonSet"), ("apps", "v1", "deployments", "Deployment"),
        ("apps", "v1", "statefulsets", "StatefulSet")]
    kube = by_name["kuberesources"]
    assert [t["group"] for t in kube] == list(KUBE_GROUPS)
    assert all(t["resource"] == t["version"] == "" for t in kube)
    assert {"", "apps", "batch", "autoscaling", "policy", "networking.k8s.io", "rbac.authorization.k8s.io",
            "storage.k8s.io"} <= set(KUBE_GROUPS) and "example.com" not in KUBE_GROUPS


async def test_a_fixed_type_no_cluster_serves_is_listed_without_a_version(api: Api) -> None:
    _, body = await api.get(BASE)
    workloads = next(i for i in body["items"] if i["metadata"]["name"] == "workloads")
    assert {(t["group"], t["resource"], t["version"]) for t in workloads["resourceTypes"]} == {
        ("apps", "deployments", ""), ("apps", "daemonsets", ""), ("apps", "statefulsets", "")}


async def test_the_list_as_a_table(api: Api, loaded: None) -> None:
    status, body, _ = await api.request("GET", BASE, params={"limit": "500"}, headers={"Accept": TABLE})
    assert status == 200 and body["kind"] == "Table"
    assert [c["name"] for c in body["columnDefinitions"]] == ["Name", "Resources"]
    cells = {row["cells"][0]: row["cells"][1] for row in body["rows"]}
    assert cells["any"] == "*"
    assert cells["workloads"] == "apps.deployments,apps.daemonsets,apps.statefulsets"  # as defined
    assert cells["kuberesources"].startswith(".*,admission.k8s.io.*,")
    assert all(row["object"]["kind"] == "PartialObjectMetadata" for row in body["rows"])


# -- a collection's objects -----------------------------------------------------------------------

def _workload(o: Stored) -> bool:
    return (o.rtype.group, o.rtype.resource) in WORKLOADS


def _kube(o: Stored) -> bool:
    return o.rtype.group in KUBE_GROUPS


WALKS: list[tuple[str, dict[str, str], Callable[[Stored], bool]]] = [
    ("workloads", {}, _workload),
    ("kuberesources", {}, _kube),
    ("any", {"groups": "apps,batch"}, lambda o: o.rtype.group in ("apps", "batch")),
    ("any", {"resources": "apps/deployments,pods"},
     lambda o: (o.rtype.group, o.rtype.resource) in {("apps", "deployments"), ("", "pods")}),
    ("any", {"groups": "example.com", "resources": "/nodes"},
     lambda o: o.rtype.group == "example.com" or o.rtype.resource == "nodes"),
    ("any", {"groups": "/,batch/v1"}, lambda o: o.rtype.group in ("", "batch")),
    ("any", {"resources": "apps/v1/statefulsets"}, lambda o: o.rtype.resource == "statefulsets"),
    ("any", {"groups": "*"}, lambda o: True),
    ("workloads", {"resources": "apps/daemonsets"}, lambda o: o.rtype.resource == "daemonsets"),
    ("kuberesources", {"clusters": "west,edge"}, lambda o: _kube(o) and o.cluster in ("west", "edge")),
    ("kuberesources", {"labelSelector": "tier=back,app!=c"}, _kube),
    ("workloads", {"fieldSelector": "metadata.namespace=web"},
     lambda o: _workload(o) and o.obj["metadata"].get("namespace") == "web"),
    ("kuberesources", {"fieldSelector": "spec.n>1"}, lambda o: _kube(o) and o.obj["spec"]["n"] > 1),
    # Clusterpedia's search conditions (apiserver.search), as URL parameters or labels.
    ("kuberesources", {"namespaces": "web,payments", "names": "api-0,db-1"},
     lambda o: _kube(o) and o.obj["metadata"].get("namespace") in ("web", "payments")
     and o.obj["metadata"]["name"] in ("api-0", "db-1")),
    ("any", {"groups": "*", "labelSelector": "internalstorage.clusterpedia.io/fuzzy-name=eb,tier=front"},
     lambda o: "eb" in o.obj["metadata"]["name"]),
    ("workloads", {"labelSelector": "search.clusterpedia.io/clusters in (west,edge)"},
     lambda o: _workload(o) and o.cluster in ("west", "edge")),
    ("workloads", {"since": "2026-01-03", "before": "2026-01-05T00:00:00Z"},
     lambda o: _workload(o) and "2026-01-03" <= o.obj["metadata"]["creationTimestamp"] < "2026-01-05"),
]


async def test_a_walk_by_pages_is_the_whole_set_once(api: Api, loaded: None) -> None:
    by_key = {o.key: o for o in OBJECTS}
    for name, params, keep in WALKS:
        want = expected(keep, params.get("labelSelector", ""))
        assert want, f"{name} {params} selects nothing and proves little"
        items = await walk(api, name, 7, **params)
        assert [_key(i) for i in items] == want, (name, params)  # in order, none twice, none missing
        for item in items:
            stored = by_key[_key(item)]
            assert item["apiVersion"] == stored.rtype.api_version and item["kind"] == stored.rtype.kind
            assert item["spec"] == stored.obj["spec"]
            assert item["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"] == stored.cluster
        status, whole = await api.get(f"{BASE}/{name}", **params)  # no limit: everything, streamed
        assert status == 200 and [_key(i) for i in whole["items"]] == want, (name, params)
        assert "continue" not in whole
        assert {(t["group"], t["resource"]) for t in whole["resourceTypes"]} == {k[:2] for k in want}


async def test_a_whole_collection_streams_past_one_read(api: Api, loaded: None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("apiserver.collections.STREAM_PAGE", 4)
    status, whole = await api.get(f"{BASE}/kuberesources")
    assert status == 200 and [_key(i) for i in whole["items"]] == expected(_kube)
    status, table, _ = await api.request("GET", f"{BASE}/workloads", headers={"Accept": TABLE})
    assert status == 200 and len(table["rows"]) == len(expected(_workload))


async def test_only_metadata(api: Api, loaded: None) -> None:
    status, body = await api.get(f"{BASE}/workloads", limit="5", onlyMetadata="true")
    assert status == 200 and len(body["items"]) == 5
    for item in body["items"]:
        assert set(item) == {"apiVersion", "kind", "metadata"}
        assert item["metadata"]["annotations"]["kubepedia.io/cluster"] in CLUSTERS


async def test_with_continue_false_and_remaining_count(api: Api, loaded: None) -> None:
    total = len(expected(lambda o: (o.rtype.group, o.rtype.resource) in WORKLOADS))
    _, body = await api.get(f"{BASE}/workloads", limit="4", withRemainingCount="true")
    assert body["remainingItemCount"] == total - 4 and body["continue"]
    _, second = await api.get(f"{BASE}/workloads", limit="4", withRemainingCount="true",
                              **{"continue": body["continue"]})
    assert second["remainingItemCount"] == total - 8
    assert second["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"]
    _, plain = await api.get(f"{BASE}/workloads", limit="4")
    assert "remainingItemCount" not in plain
    _, last = await api.get(f"{BASE}/workloads", limit=str(total), withRemainingCount="1")
    assert last["remainingItemCount"] == 0 and "continue" not in last
    _, cut = await api.get(f"{BASE}/workloads", limit="4", withContinue="false")
    assert len(cut["items"]) == 4 and "continue" not in cut


async def test_a_collection_as_a_table(api: Api, loaded: None) -> None:
    params = {"resources": "nodes,apps/deployments", "limit": "100"}
    status, body, _ = await api.request("GET", f"{BASE}/any", params=params, headers={"Accept": TABLE})
    assert status == 200 and body["kind"] == "Table"
    assert [c["name"] for c in body["columnDefinitions"]] == ["Cluster", "Group", "Version", "Kind",
                                                              "Namespace", "Name", "Age"]
    want = expected(lambda o: o.rtype.resource in ("nodes", "deployments"))
    kinds = {"nodes": "Node", "deployments": "Deployment"}
    cells = [(r["cells"][1], r["cells"][3], r["cells"][4], r["cells"][5], r["cells"][0])
             for r in body["rows"]]
    assert cells == [(g, kinds[r], ns, n, c) for g, r, ns, n, c in want]
    assert {r["cells"][2] for r in body["rows"]} == {"v1"}
    row = body["rows"][0]
    assert row["object"]["kind"] == "PartialObjectMetadata" and "spec" not in row["object"]
    _, paged, _ = await api.request("GET", f"{BASE}/workloads", params={"limit": "2"},
                                    headers={"Accept": TABLE})
    assert len(paged["rows"]) == 2 and paged["metadata"]["continue"]


BAD: list[tuple[dict[str, str], str]] = [
    ({}, "groups= and/or resources="),  # any names its types
    ({"groups": "nosuch.example.com"}, "groups: 'nosuch.example.com'"),
    ({"resources": "apps/deployment"}, "resources: 'apps/deployment'"),
    ({"resources": "apps/"}, "resources: 'apps/'"),
    ({"resources": "a/b/c/d"}, "resources: 'a/b/c/d'"),
    ({"groups": "apps/v1/x"}, "groups: 'apps/v1/x'"),
    ({"groups": "Apps"}, "groups: 'Apps'"),
    ({"resources": "apps/deployments;drop"}, "resources: 'apps/deployments;drop'"),
    ({"groups": ",".join(["apps"] * 101)}, "groups: at most 100"),
    ({"groups": "apps", "limit": "-1"}, "limit"),
    ({"groups": "apps", "limit": "x"}, "limit"),
    ({"groups": "apps", "continue": "forged"}, "continue key"),
    ({"groups": "apps", "labelSelector": "a=(b"}, ""),
    ({"groups": "apps", "fieldSelector": "spec.replicas>abc"}, "fieldSelector"),
    ({"groups": "apps", "orderby": "name desc"}, "orderby"),
    ({"groups": "apps", "namespaces": "a b"}, "namespaces"),
    ({"groups": "apps", "since": "yesterday"}, "since"),
    ({"groups": "apps", "labelSelector": "search.clusterpedia.io/offset=3"}, "offset"),
    ({"groups": "apps", "onlyMetadata": "maybe"}, "onlyMetadata"),
    ({"groups": "apps", "withContinue": "2"}, "withContinue"),
    ({"groups": "apps", "withRemainingCount": "yes"}, "withRemainingCount"),
    ({"groups": "apps", "clusters": "Not_A_Cluster"}, "clusters"),
    ({"groups": "apps", "resourceVersion": "x1"}, "resource version"),
]


async def test_bad_parameters_are_400_naming_them(api: Api, loaded: None) -> None:
    for params, named in BAD:
        status, body = await api.get(f"{BASE}/any", **params)
        assert status == 400, (params, body)
        assert (body["kind"], body["reason"], body["code"]) == ("Status", "BadRequest", 400)
        assert named in body["message"], (params, body["message"])


async def test_a_type_outside_the_collection_is_400(api: Api, loaded: None) -> None:
    status, body = await api.get(f"{BASE}/workloads", resources="batch/jobs")
    assert status == 400 and "batch/jobs" in body["message"] and "resources" in body["message"]
    status, body = await api.get(f"{BASE}/kuberesources", groups="example.com")
    assert status == 400 and "example.com" in body["message"]


async def test_a_token_of_another_query_is_refused(api: Api, loaded: None) -> None:
    _, body = await api.get(f"{BASE}/any", groups="apps", limit="2")
    for other in ({"groups": "apps,batch"}, {"groups": "apps", "labelSelector": "tier=back"}):
        status, refused = await api.get(f"{BASE}/any", limit="2", **other, **{"continue": body["continue"]})
        assert status == 400 and "continue key" in refused["message"]
    status, list_page = await api.get("/apis/apps/v1/deployments", limit="1")
    status, refused = await api.get(f"{BASE}/any", groups="apps", limit="2",
                                    **{"continue": list_page["metadata"]["continue"]})
    assert status == 400


async def test_an_unknown_collection_is_404(api: Api, loaded: None) -> None:
    status, body = await api.get(f"{BASE}/nosuch")
    assert (status, body["kind"], body["reason"]) == (404, "Status", "NotFound")
    assert body["details"] == {"name": "nosuch", "group": "clusterpedia.io", "kind": "collectionresources"}


async def test_collections_are_read_only_and_not_watched(api: Api, loaded: None) -> None:
    status, body, _ = await api.request("DELETE", f"{BASE}/workloads")
    assert (status, body["reason"]) == (405, "MethodNotAllowed")
    status, body = await api.get(f"{BASE}/workloads", watch="true")
    assert (status, body["reason"]) == (405, "MethodNotAllowed")


async def test_discovery(api: Api, loaded: None) -> None:
    _, groups = await api.get("/apis")
    version = {"groupVersion": "clusterpedia.io/v1beta1", "version": "v1beta1"}
    assert {"name": "clusterpedia.io", "versions": [version], "preferredVersion": version} in groups["groups"]
    status, group = await api.get("/apis/clusterpedia.io")
    assert status == 200 and group["preferredVersion"]["version"] == "v1beta1"
    status, resources = await api.get("/apis/clusterpedia.io/v1beta1")
    assert status == 200 and resources["resources"] == [
        {"name": "collectionresources", "singularName": "collectionresource", "namespaced": False,
         "kind": "CollectionResource", "verbs": ["get", "list"]}]
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    _, aggregated, _ = await api.request("GET", "/apis", headers={"Accept": accept})
    own = next(i for i in aggregated["items"] if i["metadata"]["name"] == "clusterpedia.io")
    assert [(r["resource"], r["verbs"], r["scope"]) for r in own["versions"][0]["resources"]] == [
        ("collectionresources", ["get", "list"], "Cluster")]
    for path in ("/clusters/east/apis", "/apis/clusterpedia.io/v1beta1/resources/apis"):  # the root's only
        _, other = await api.get(path)
        assert "clusterpedia.io" not in {g["name"] for g in other["groups"]}, path
        _, other, _ = await api.request("GET", path, headers={"Accept": accept})
        assert "clusterpedia.io" not in {i["metadata"]["name"] for i in other["items"]}, path


async def test_answers_are_as_the_openapi_document_says(api: Api, loaded: None) -> None:
    for path, params, status in ((BASE, {}, 200), (f"{BASE}/workloads", {"limit": "3"}, 200),
                                 (f"{BASE}/workloads", {"limit": "3", "withRemainingCount": "true"}, 200),
                                 (f"{BASE}/any", {"groups": "*", "onlyMetadata": "true"}, 200),
                                 (f"{BASE}/any", {}, 400), (f"{BASE}/nosuch", {}, 404)):
        got, body = await api.get(path, **params)
        assert got == status, (path, body)
        documented = f"{BASE}/{{name}}" if path != BASE else BASE
        _answers_as_documented(documented, status, body, "application/json")


# -- scope ----------------------------------------------------------------------------------------

async def test_a_scope_never_lets_a_type_or_cluster_leak(db_url: str, loaded: None) -> None:
    allowed = {("apps", "deployments"), ("", "pods"), ("", "nodes")}
    app = build_app(database_url=db_url, access=granted(Scope.of(clusters={"east", "west"},
                                                                 namespaces={"web", ""}, types=allowed)))

    def keep(o: Stored) -> bool:
        return ((o.rtype.group, o.rtype.resource) in allowed and o.cluster in ("east", "west")
                and o.obj["metadata"].get("namespace", "") in ("web", ""))

    async with serving(app) as scoped:
        for name, params in (("kuberesources", {}), ("workloads", {}), ("any", {"groups": "*"}),
                             ("any", {"groups": "apps,"}), ("kuberesources", {"clusters": "west,edge"})):
            items = await walk(scoped, name, 5, **params)
            seen = {_key(i) for i in items}
            assert seen and all(keep(next(o for o in OBJECTS if o.key == k)) for k in seen), (name, params)
            if name == "kuberesources" and not params:
                assert [_key(i) for i in items] == expected(keep)
        # A type outside the scope reads as one that does not exist; the list names none.
        for params in ({"resources": "apps/daemonsets"}, {"groups": "batch"}):
            status, body = await scoped.get(f"{BASE}/any", **params)
            assert status == 400, body
        _, body = await scoped.get(BASE)
        types = {i["metadata"]["name"]: i["resourceTypes"] for i in body["items"]}
        assert [(t["group"], t["resource"]) for t in types["workloads"]] == [("apps", "deployments")]
        assert [t["group"] for t in types["kuberesources"]] == ["", "apps"]


async def test_stale_clusters_are_warned_of_only_when_read(db_url: str, pool: asyncpg.Pool,
                                                           loaded: None) -> None:
    await pool.execute("UPDATE clusters SET healthy = false, health_message = 'unreachable'"
                       " WHERE name IN ('edge', 'west')")
    app = build_app(database_url=db_url, access=granted(Scope.of(clusters={"east", "west"})))
    async with serving(app) as scoped:
        for params, warned in (({}, ["west"]), ({"clusters": "east"}, [])):
            query = {"limit": "3", **params}
            status, _, resp = await scoped.request("GET", f"{BASE}/workloads", params=query)
            assert status == 200
            named = [w.split("cluster ")[1].split(":")[0] for w in resp.headers.getall("Warning", [])]
            assert named == warned, (params, resp.headers.getall("Warning", []))


def test_a_continue_key_of_another_shape_is_refused() -> None:
    with pytest.raises(StatusError) as raised:
        cursor_key(Cursor(resource_version=1, after=("default", "web-0", "east")))
    assert raised.value.code == 400


# -- the plan at a realistic size -----------------------------------------------------------------

PLAN_TYPES = (("", "v1", "pods", "Pod", 15_000), ("", "v1", "configmaps", "ConfigMap", 5_000),
              ("", "v1", "services", "Service", 1_500), ("apps", "v1", "deployments", "Deployment", 2_000),
              ("apps", "v1", "daemonsets", "DaemonSet", 200),
              ("apps", "v1", "statefulsets", "StatefulSet", 300),
              ("apps", "v1", "replicasets", "ReplicaSet", 2_000), ("batch", "v1", "jobs", "Job", 1_000),
              ("example.com", "v1", "widgets", "Widget", 1_000))
PLAN_CLUSTERS = ("c1", "c2", "c3", "c4")
PLAN_COLUMNS = ("cluster", "grp", "version", "resource", "kind", "namespace", "name", "uid",
                "resource_version", "labels", "seq", "object")


def _plan_rows() -> Iterator[tuple[Any, ...]]:
    seq = 0
    for cluster in PLAN_CLUSTERS:
        for group, version, resource, kind, count in PLAN_TYPES:
            for i in range(count):
                seq += 1
                namespace, name = f"ns-{i % 20:02d}", f"{resource[:4]}-{i:05d}"
                labels = {"app": f"app{i % 50}", "tier": "front" if i % 3 else "back"}
                obj = {"apiVersion": f"{group}/{version}".lstrip("/"), "kind": kind,
                       "metadata": {"name": name, "namespace": namespace, "uid": f"{cluster}-{seq}",
                                    "resourceVersion": "1", "labels": labels,
                                    "annotations": {"note": "x" * 300}},
                       "spec": {"replicas": i % 5}}
                yield (cluster, group, version, resource, kind, namespace, name, f"{cluster}-{seq}", "1",
                       labels, seq, orjson.dumps(obj))


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _targets(*types: tuple[str, str, str], labels: str = "") -> list[Target]:
    return [Target(group=g, version="v1", resource=r, kind=k, labels=parse_label_selector(labels))
            for g, r, k in types]


@pytest_asyncio.fixture
async def big(pool: asyncpg.Pool) -> asyncpg.Pool:
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("resources", columns=PLAN_COLUMNS, records=_plan_rows())
        await conn.execute("VACUUM (ANALYZE) resources")
    return pool


WORKLOAD_TYPES = (("apps", "deployments", "Deployment"), ("apps", "daemonsets", "DaemonSet"),
                  ("apps", "statefulsets", "StatefulSet"))
KUBE_TYPES = tuple((g, r, k) for g, _, r, k, _ in PLAN_TYPES if g != "example.com")
MIXED = (("apps", "deployments", "Deployment"), ("batch", "jobs", "Job"), ("", "services", "Service"))


PAGES: list[tuple[tuple[tuple[str, str, str], ...], tuple[str, ...] | None]] = [
    (WORKLOAD_TYPES, None),
    (WORKLOAD_TYPES, ("apps", "deployments", "ns-05", "depl-00100", "c2")),
    (KUBE_TYPES, None),
    (KUBE_TYPES, ("apps", "daemonsets", "ns-05", "daem-00100", "c2")),
    (MIXED, None),  # three groups: left to itself, PostgreSQL sorted every object of them
    (MIXED, ("batch", "jobs", "ns-01", "jobs-00001", "c3")),
]


async def _plan(conn: asyncpg.Connection, targets: list[Target],
                after: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The plan of a page, read as the read API reads it."""
    sql, params = compiled(page_statement(targets, EVERYTHING_SCOPE, limit=501, after=after))
    async with conn.transaction(readonly=True):
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")  # as the read API's pool
        await in_index_order(conn, targets)
        plan = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *params)
    return list(_nodes(plan[0]["Plan"]))


async def test_a_page_is_read_in_index_order(big: asyncpg.Pool) -> None:
    """At 101,000 objects of nine types in four clusters: a page of a collection is one scan
    of the list-order index from the continue key on, never a sort of the matching set; a
    rare label is still found by its index."""
    async with big.acquire() as conn:
        for types, after in PAGES:
            nodes = await _plan(conn, _targets(*types), after)
            scans = [(n["Node Type"], n.get("Index Name")) for n in nodes
                     if n.get("Relation Name") == "resources"]
            assert scans == [("Index Scan", "resources_list_order")], (types, after, scans)
            assert not [n for n in nodes if "Sort" in n["Node Type"]], (types, after)
            scan = next(n for n in nodes if n.get("Index Name") == "resources_list_order")
            assert "grp = ANY" in scan["Index Cond"] and "resource = ANY" in scan["Index Cond"]
            if after is not None:
                assert "ROW(grp, resource, namespace, name, cluster) >" in scan["Index Cond"]
            assert scan["Actual Rows"] == 501 and scan.get("Rows Removed by Filter", 0) == 0
        # With selectors the planner keeps its choice: the ordered scan would filter everything.
        nodes = await _plan(conn, _targets(*KUBE_TYPES, labels="app=app3,tier=back"))
        assert "Bitmap Index Scan" in {n["Node Type"] for n in nodes}, nodes


# -- kubectl --------------------------------------------------------------------------------------

@pytest.mark.skipif(not shutil.which("kubectl"), reason="no kubectl on this machine")
async def test_kubectl_gets_collections(tls_api: Api, loaded: None, tmp_path: Path) -> None:
    api = tls_api
    kubeconfig = tmp_path / "kubeconfig"
    ca = certificate_pem(tmp_path / CERT_FILE)
    kubeconfig.write_text(yaml.safe_dump(document(api.url, list(CLUSTERS), token=TEST_TOKEN, ca=ca)))

    async def kubectl(*args: str) -> str:
        result = await asyncio.to_thread(subprocess.run, ["kubectl", "--kubeconfig", str(kubeconfig), *args],
                                         capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    lines = (await kubectl("get", "collectionresources", "workloads")).splitlines()
    assert lines[0].split() == ["CLUSTER", "GROUP", "VERSION", "KIND", "NAMESPACE", "NAME", "AGE"]
    want = expected(lambda o: (o.rtype.group, o.rtype.resource) in WORKLOADS)
    kinds = {"deployments": "Deployment", "daemonsets": "DaemonSet", "statefulsets": "StatefulSet"}
    assert [tuple(line.split()[:6]) for line in lines[1:]] == [(c, g, "v1", kinds[r], ns, n)
                                                                for g, r, ns, n, c in want]
    listed = (await kubectl("get", "collectionresources")).splitlines()
    assert listed[0].split() == ["NAME", "RESOURCES"]
    assert {line.split()[0] for line in listed[1:]} == {"any", "workloads", "kuberesources"}
    raw = orjson.loads(await kubectl("get", "--raw", f"{BASE}/any?groups=batch&limit=2"))
    assert [i["kind"] for i in raw["items"]] == ["Job", "Job"] and raw["continue"]
    assert "collectionresources" in await kubectl("api-resources", "--api-group", "clusterpedia.io")

