"""Clusterpedia's search parameters on every list path, checked against a plain Python
filter over the same generated objects in several clusters."""

from __future__ import annotations

import asyncio
import base64
import itertools
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
import yaml

from apiserver.app import build_app
from kube.resources import ResourceType
from kubepedia.tls import CERT_FILE
from syncer.ingest import Store
from tests.access import TEST_TOKEN, granted
from tests.apiserver.conftest import Api, serving
from tests.factories import DEPLOYMENTS, PODS

REPLICASETS = ResourceType(group="apps", version="v1", resource="replicasets", kind="ReplicaSet",
                           namespaced=True)
CLUSTERS = ("east", "west", "edge")
NAMESPACES = ("default", "payments")
BASE = datetime(2026, 3, 1, tzinfo=UTC)
PEDIA = "/apis/clusterpedia.io/v1beta1/resources"
Obj = dict[str, Any]


def _meta(name: str, namespace: str, uid: str, rv: str, created: datetime | None,
          owner: tuple[str, str, str] | None) -> Obj:
    meta: Obj = {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": rv,
                 "labels": {"app": name.split("-")[0]}}
    if created is not None:
        meta["creationTimestamp"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    if owner is not None:
        kind, owner_name, owner_uid = owner
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": kind, "name": owner_name,
                                    "uid": owner_uid, "controller": True}]
    return meta


def fleet() -> dict[str, dict[str, list[Obj]]]:
    """Per cluster and type: Deployments own ReplicaSets own Pods; creation times spread over
    days (one pod has none); resourceVersions numeric except one."""
    out: dict[str, dict[str, list[Obj]]] = {}
    counter = itertools.count()
    for c, cluster in enumerate(CLUSTERS):
        kinds: dict[str, list[Obj]] = {"deployments": [], "replicasets": [], "pods": []}
        for namespace in NAMESPACES:
            for d in range(3):
                app = ("web", "api", "cache")[d]
                dep_uid = f"{cluster}-{namespace}-dep-{d}"
                n = next(counter)
                kinds["deployments"].append({"apiVersion": "apps/v1", "kind": "Deployment",
                                             "metadata": _meta(app, namespace, dep_uid, str(10 + n),
                                                               BASE + timedelta(days=n % 5), None)})
                rs_name, rs_uid = f"{app}-7f9c{c}", f"{cluster}-{namespace}-rs-{d}"
                kinds["replicasets"].append({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                             "metadata": _meta(rs_name, namespace, rs_uid, str(20 + n),
                                                               BASE + timedelta(days=n % 5, hours=1),
                                                               ("Deployment", app, dep_uid))})
                for p in range(3):
                    n = next(counter)
                    created = None if (c, namespace, d, p) == (1, "default", 0, 0) else \
                        BASE + timedelta(days=n % 7, hours=p, minutes=n)
                    odd = (c, namespace, d, p) == (2, "payments", 1, 2)
                    rv = "x-unparsed" if odd else str(1000 + 7 * n % 97)
                    name = f"{rs_name}-{'abcdefghij'[p + d]}{n:02d}"
                    owner = ("ReplicaSet", rs_name, rs_uid)
                    meta = _meta(name, namespace, f"{cluster}-pod-{n}", rv, created, owner)
                    kinds["pods"].append({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                                          "spec": {"containers": [{"name": "c", "image": "x"}]}})
        out[cluster] = kinds
    return out


FLEET = fleet()


@pytest_asyncio.fixture
async def searched(pool: asyncpg.Pool, db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    store = Store(pool)
    for cluster, kinds in FLEET.items():
        await pool.execute("INSERT INTO clusters (name, mode) VALUES ($1, 'push')", cluster)
        for rtype in (DEPLOYMENTS, REPLICASETS, PODS):
            async with store.snapshot(cluster=cluster, rtype=rtype) as snap:
                await snap.add(kinds[rtype.resource])
                await snap.end("5000")
    # Over https (a certificate in tmp_path): kubectl sends its token to https servers only.
    async with serving(build_app(database_url=db_url, access=granted()), tls=tmp_path) as api:
        yield api


def all_of(resource: str) -> Iterator[tuple[str, Obj]]:
    for cluster, kinds in FLEET.items():
        for obj in kinds[resource]:
            yield cluster, obj


def ident(cluster: str, obj: Obj) -> tuple[str, str, str]:
    return (cluster, obj["metadata"]["namespace"], obj["metadata"]["name"])


def expected(resource: str, keep: Callable[[str, Obj], bool]) -> list[tuple[str, str, str]]:
    return sorted((ident(c, o) for c, o in all_of(resource) if keep(c, o)), key=lambda k: (k[1], k[2], k[0]))


def got(body: Obj) -> list[tuple[str, str, str]]:
    return [(item["metadata"]["annotations"]["kubepedia.io/cluster"], item["metadata"]["namespace"],
             item["metadata"]["name"]) for item in body["items"]]


async def walk(api: Api, path: str, params: dict[str, str], *, limit: int = 4) -> list[tuple[str, str, str]]:
    """Every page of a list, in order, through its continue tokens."""
    out: list[tuple[str, str, str]] = []
    query = {**params, "limit": str(limit)}
    while True:
        status, body = await api.get(path, **query)
        assert status == 200, body
        out += got(body)
        token = body["metadata"].get("continue")
        if not token:
            return out
        query = {**params, "limit": str(limit), "continue": token}


def created(obj: Obj) -> datetime | None:
    text = obj["metadata"].get("creationTimestamp")
    return datetime.fromisoformat(text) if text else None


def owner_uid(obj: Obj) -> str | None:
    refs = obj["metadata"].get("ownerReferences") or []
    return next((r["uid"] for r in refs if r.get("controller")), None)


# -- conditions ---------------------------------------------------------------------------------

async def test_clusters_namespaces_and_names(searched: Api) -> None:
    names = "web-7f9c0-a13,api-7f9c2-c66,api-7f9c1-c42,nothing"
    want = expected("pods", lambda c, o: c in ("east", "edge") and o["metadata"]["namespace"] == "payments"
                    and o["metadata"]["name"] in names.split(","))
    params = {"clusters": "east,edge", "namespaces": "payments", "names": names}
    assert want and await walk(searched, "/api/v1/pods", params) == want
    assert await walk(searched, PEDIA + "/api/v1/pods", params) == want, "Clusterpedia's path answers alike"


@pytest.mark.parametrize("sorted_up_to", [10_000, 2])
async def test_fuzzy_name_is_a_case_sensitive_substring(searched: Api, sorted_up_to: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # A page's keys come from resource_keys: all matches sorted, or beyond a count (made
    # small here) the list order walked; both answer alike, in pages of every size.
    monkeypatch.setattr("apiserver.query.MATCHES_SORTED", sorted_up_to)
    for part in ("c1-b", "b1", "API", "web_7", "e"):
        want = expected("pods", lambda c, o: part in o["metadata"]["name"])  # noqa: B023
        selector = f"internalstorage.clusterpedia.io/fuzzy-name={part}"
        assert await walk(searched, PEDIA + "/api/v1/pods", {"labelSelector": selector}) == want, part
        for limit in (1, 3):
            assert await walk(searched, PEDIA + "/api/v1/pods", {"labelSelector": selector},
                              limit=limit) == want, (part, limit)
        in_one = {"labelSelector": selector, "namespaces": "payments", "clusters": "east,west"}
        assert await walk(searched, "/api/v1/pods", in_one) == [
            w for w in want if w[1] == "payments" and w[0] in ("east", "west")], part
    # Several fuzzy names: each must be in the name; mixed with an ordinary label.
    selector = "internalstorage.clusterpedia.io/fuzzy-name in (7f9c,c2),app=cache"
    want = expected("pods", lambda c, o: "7f9c" in o["metadata"]["name"] and "c2" in o["metadata"]["name"]
                    and o["metadata"]["labels"]["app"] == "cache")
    assert want and await walk(searched, "/api/v1/pods", {"labelSelector": selector}) == want


@pytest.mark.parametrize(("since", "before"), [
    ("2026-03-03", "2026-03-05"),
    ("2026-03-03T05:00:00Z", "2026-03-04 10:30:00"),
    (str(int(datetime(2026, 3, 2, 12, tzinfo=UTC).timestamp())),
     str(int(datetime(2026, 3, 6, tzinfo=UTC).timestamp() * 1000))),
    ("2026-03-03T07:00:00+02:00", ""),
])
async def test_since_is_inclusive_and_before_exclusive(searched: Api, since: str, before: str) -> None:
    from apiserver.times import parse_time
    lo = parse_time(since)
    hi = parse_time(before) if before else None
    want = expected("pods", lambda c, o: (t := created(o)) is not None and t >= lo and (hi is None or t < hi))
    params = {"since": since, **({"before": before} if before else {})}
    assert want and await walk(searched, "/api/v1/pods", params) == want
    exact = expected("pods", lambda c, o: created(o) == BASE + timedelta(days=2, hours=1, minutes=25))
    if exact:  # the boundary itself: in with since, out with before
        stamp = "2026-03-03T01:25:00Z"
        assert set(exact) <= set(await walk(searched, "/api/v1/pods", {"since": stamp}))
        assert not set(exact) & set(await walk(searched, "/api/v1/pods", {"before": stamp}))


async def test_owner_by_uid_and_by_name_with_seniority(searched: Api) -> None:
    rs = "west-payments-rs-1"
    want = expected("pods", lambda c, o: owner_uid(o) == rs)
    assert len(want) == 3
    assert await walk(searched, "/api/v1/pods", {"ownerUID": rs}) == want
    # The deployment's pods: two generations down, by its uid or its name and type.
    dep = "west-payments-dep-1"
    assert await walk(searched, "/api/v1/pods", {"ownerUID": dep, "ownerSeniority": "1"}) == want
    by_name = {"ownerName": "api", "ownerGR": "deployments.apps", "ownerSeniority": "1"}
    want_all = expected("pods", lambda c, o: (owner_uid(o) or "").endswith("-rs-1"))
    assert len(want_all) == 18, "every cluster and namespace has a deployment named api"
    assert await walk(searched, "/api/v1/pods", by_name) == want_all
    in_one = await walk(searched, "/api/v1/namespaces/payments/pods", {**by_name, "clusters": "west"})
    assert in_one == want
    # An owner of another type with that name owns nothing here.
    assert await walk(searched, "/api/v1/pods", {**by_name, "ownerGR": "statefulsets.apps"}) == []
    rs_of = expected("replicasets", lambda c, o: owner_uid(o) == dep)
    assert await walk(searched, "/apis/apps/v1/replicasets", {"ownerName": "api", "clusters": "west",
                                                              "namespaces": "payments"}) == rs_of


# -- order and pages ------------------------------------------------------------------------------

def _sort_value(field: str, cluster: str, obj: Obj) -> Any:
    meta = obj["metadata"]
    match field:
        case "cluster":
            return cluster
        case "namespace" | "name":
            return meta[field]
        case "created_at":
            return created(obj) or datetime.min.replace(tzinfo=UTC)
        case _:
            rv = meta["resourceVersion"]
            return int(rv) if rv.isdigit() else -1


def ordered(resource: str, order: list[tuple[str, bool]]) -> list[tuple[str, str, str]]:
    fields = [f for f, _ in order]
    full = order + [(f, order[-1][1]) for f in ("namespace", "name", "cluster") if f not in fields]
    rows = list(all_of(resource))
    for field, desc in reversed(full):  # a stable sort per key, last key first
        rows.sort(key=lambda r: _sort_value(field, *r), reverse=desc)
    return [ident(c, o) for c, o in rows]


@pytest.mark.parametrize("orderby", [
    "created_at desc", "created_at", "name desc", "cluster,name desc", "resource_version desc,namespace",
    "namespace desc,created_at", "resource_version",
])
async def test_orderby_pages_with_keyset_tokens(searched: Api, orderby: str) -> None:
    order = [(part.split()[0], part.endswith(" desc")) for part in orderby.split(",")]
    want = ordered("pods", order)
    for limit in (1, 5, 7):
        assert await walk(searched, "/api/v1/pods", {"orderby": orderby}, limit=limit) == want, limit
    status, body = await searched.get("/api/v1/pods", orderby=orderby)
    assert status == 200 and got(body) == want, "unpaged lists stream in the same order"


async def test_orderby_as_a_label_and_url_parameters_win(searched: Api) -> None:
    label = "search.clusterpedia.io/orderby in (created_at_desc)"
    newest_first = ordered("pods", [("created_at", True)])
    assert await walk(searched, "/api/v1/pods", {"labelSelector": label}) == newest_first
    both = {"labelSelector": label, "orderby": "name"}
    assert await walk(searched, "/api/v1/pods", both) == ordered("pods", [("name", False)])
    labels = "search.clusterpedia.io/clusters=west,search.clusterpedia.io/namespaces in (payments),app=api"
    want = expected("pods", lambda c, o: c == "west" and o["metadata"]["namespace"] == "payments"
                    and o["metadata"]["labels"]["app"] == "api")
    assert want and await walk(searched, "/api/v1/pods", {"labelSelector": labels}) == want
    assert await walk(searched, "/api/v1/pods", {"labelSelector": labels, "clusters": "east"}) == \
        expected("pods", lambda c, o: c == "east" and o["metadata"]["namespace"] == "payments"
                 and o["metadata"]["labels"]["app"] == "api")


async def test_a_token_belongs_to_its_order(searched: Api) -> None:
    _, body = await searched.get("/api/v1/pods", orderby="created_at desc", limit="3")
    token = body["metadata"]["continue"]
    status, error = await searched.get("/api/v1/pods", orderby="created_at", limit="3", **{"continue": token})
    assert status == 400 and error["kind"] == "Status" and "continue" in error["message"]


async def test_with_continue_remaining_count_and_only_metadata(searched: Api) -> None:
    total = len(list(all_of("pods")))
    _, body = await searched.get("/api/v1/pods", limit="5", withContinue="false")
    assert len(body["items"]) == 5 and "continue" not in body["metadata"]
    _, body = await searched.get("/api/v1/pods", limit="5", withRemainingCount="true",
                                 ownerUID="east-default-rs-0")
    assert body["metadata"].get("remainingItemCount") is None, "three pods: nothing remains"
    _, body = await searched.get("/api/v1/pods", limit="5", withRemainingCount="true",
                                 orderby="created_at desc", labelSelector="app=web")
    webs = len(expected("pods", lambda c, o: o["metadata"]["labels"]["app"] == "web"))
    assert body["metadata"]["remainingItemCount"] == webs - 5, "counted exactly, selectors or not"
    _, body = await searched.get("/api/v1/pods", limit="5", withRemainingCount="false")
    assert "remainingItemCount" not in body["metadata"]
    _, body = await searched.get("/api/v1/pods", limit="5")
    assert body["metadata"]["remainingItemCount"] == total - 5
    _, body = await searched.get(PEDIA + "/api/v1/pods", limit="2", onlyMetadata="true")
    assert [sorted(item) for item in body["items"]] == [["apiVersion", "kind", "metadata"]] * 2
    assert body["items"][0]["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"]


async def test_clusterpedia_paths_for_one_cluster_and_discovery(searched: Api) -> None:
    status, body = await searched.get(PEDIA + "/clusters/west/apis/apps/v1/namespaces/payments/deployments")
    assert status == 200 and got(body) == expected(
        "deployments", lambda c, o: c == "west" and o["metadata"]["namespace"] == "payments")
    status, body = await searched.get(PEDIA + "/clusters/west/apis/apps/v1/namespaces/payments/deployments"
                                      "/api")
    assert status == 200 and body["metadata"]["uid"] == "west-payments-dep-1"
    status, body = await searched.get(PEDIA + "/clusters/nowhere/api/v1/pods")
    assert status == 404 and body["kind"] == "Status"
    status, body = await searched.get(PEDIA + "/apis/apps/v1")
    assert status == 200 and {"deployments", "replicasets"} <= {r["name"] for r in body["resources"]}


# -- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("params", "words"), [
    ({"since": "yesterday"}, "since"),
    ({"before": "2026-13-01"}, "before"),
    ({"since": "2026-03-05", "before": "2026-03-01"}, "since is after before"),
    ({"orderby": "age"}, "unknown field 'age'"),
    ({"orderby": "name sideways"}, "FIELD desc"),
    ({"orderby": "name,name desc"}, "named twice"),
    ({"ownerUID": "a", "ownerName": "b"}, "exclusive"),
    ({"ownerSeniority": "1"}, "need ownerUID or ownerName"),
    ({"ownerName": "a", "ownerSeniority": "99"}, "ownerSeniority"),
    ({"ownerUID": "a", "ownerGR": "deployments.apps"}, "ownerGR"),
    ({"ownerName": "a", "ownerGR": "Deploy/ments"}, "ownerGR"),
    ({"names": "a,,%"}, "names"),
    ({"clusters": "East"}, "clusters"),
    ({"withContinue": "maybe"}, "withContinue"),
    ({"withRemainingCount": "2"}, "withRemainingCount"),
    ({"labelSelector": "search.clusterpedia.io/offset=10"}, "not a search condition"),
    ({"labelSelector": "search.clusterpedia.io/since=bad"}, "since"),
    ({"labelSelector": "search.clusterpedia.io/owner-uid in (a,b)"}, "takes ="),
    ({"labelSelector": "internalstorage.clusterpedia.io/fuzzy-name!=a"}, "fuzzy-name takes"),
    ({"orderby": "name", "watch": "1"}, "not supported with watch"),
    ({"ownerUID": "a", "asOf": "2026-03-01T00:00:00Z"}, "not supported with asOf"),
])
async def test_bad_parameters_are_400_status(searched: Api, params: dict[str, str], words: str) -> None:
    status, body = await searched.get("/api/v1/pods", **params)
    assert status == 400, body
    assert body["kind"] == "Status" and body["reason"] == "BadRequest" and words in body["message"]


async def test_request_text_stays_data(searched: Api) -> None:
    """Names that look like SQL or LIKE patterns match only themselves."""
    for params in ({"names": "a'--"}, {"labelSelector": "internalstorage.clusterpedia.io/fuzzy-name=c_-b"},
                   {"ownerName": "x.y"}, {"labelSelector": "internalstorage.clusterpedia.io/fuzzy-name=%"}):
        status, body = await searched.get("/api/v1/pods", **params)
        assert status in (200, 400), body
        if status == 200:
            assert body["items"] == [], params


# -- kubectl, as Clusterpedia's users point it ----------------------------------------------------

async def test_kubectl_at_the_clusterpedia_path(searched: Api, tmp_path: Path) -> None:
    """A kubeconfig whose server is Clusterpedia's resources path: discovery, lists, labels."""
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "pedia",
        "clusters": [{"name": "pedia", "cluster": {
            "server": searched.url + PEDIA,
            "certificate-authority-data": base64.b64encode((tmp_path / CERT_FILE).read_bytes()).decode()}}],
        "users": [{"name": "u", "user": {"token": TEST_TOKEN}}],
        "contexts": [{"name": "pedia", "context": {"cluster": "pedia", "user": "u"}}]}))

    async def kubectl(*args: str) -> str:
        result = await asyncio.to_thread(subprocess.run, ["kubectl", "--kubeconfig", str(config),
                                                          "--cache-dir", str(tmp_path / "cache"), *args],
                                         capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    names = (await kubectl("get", "pods", "-A", "-o", "name", "-l",
                           "search.clusterpedia.io/orderby in (created_at_desc),app=cache")).split()
    want = [k for k in ordered("pods", [("created_at", True)])
            if k[2].startswith("cache-")]
    assert names == [f"pod/{name}" for _, _, name in want]
    out = await kubectl("get", "deployments", "-n", "payments", "-l", "search.clusterpedia.io/clusters=west")
    assert out.split("\n")[0].split()[:2] == ["CLUSTER", "NAME"] and len(out.strip().split("\n")) == 4


async def test_watch_takes_clusters_namespaces_and_names(searched: Api, pool: asyncpg.Pool) -> None:
    from tests.apiserver.conftest import next_events, watching
    picked = [o for c, o in all_of("pods") if c == "east"][:4]
    names = ",".join(o["metadata"]["name"] for o in picked[:2])
    _, listed = await searched.get("/api/v1/pods")
    async with watching(searched, "/api/v1/pods", resourceVersion=listed["metadata"]["resourceVersion"],
                        namespaces=picked[0]["metadata"]["namespace"], names=names, clusters="east") as queue:
        store = Store(pool)
        changed: list[Obj] = []
        for obj in picked:
            meta = {**obj["metadata"], "resourceVersion": "9000", "labels": {"touched": "yes"}}
            changed.append({"type": "MODIFIED", "object": {**obj, "metadata": meta}})
        await store.apply_batch(cluster="east", rtype=PODS, events=changed)
        events = await next_events(queue, 2)
        assert sorted(e["object"]["metadata"]["name"] for e in events) == sorted(names.split(","))
        # The next event is the next matching change: the others were never sent.
        again = changed[1]["object"]
        last = {**again, "metadata": {**again["metadata"], "resourceVersion": "9002"}}
        await store.apply_batch(cluster="east", rtype=PODS, events=[{"type": "MODIFIED", "object": last}])
        (event,) = await next_events(queue, 1)
        assert event["object"]["metadata"]["annotations"]["kubepedia.io/resource-version"] == "9002"


async def test_stale_clusters_are_warned_of_only_when_read(searched: Api, pool: asyncpg.Pool,
                                                           db_url: str) -> None:
    """A list's or watch's Warnings name only clusters the request and the caller's scope read."""
    from apiserver.query import Scope
    await pool.execute("UPDATE clusters SET healthy = false, health_message = 'unreachable'"
                       " WHERE name IN ('edge', 'west')")
    app = build_app(database_url=db_url, access=granted(Scope.of(clusters={"east", "west"})))
    async with serving(app) as scoped:
        for params, warned in (({}, ["west"]), ({"clusters": "east"}, []), ({"limit": "2"}, ["west"]),
                               ({"watch": "1", "timeoutSeconds": "1"}, ["west"]),
                               ({"asOf": datetime.now(UTC).isoformat()}, ["west"])):
            async with scoped.session.get(scoped.url + "/api/v1/pods", params=params) as resp:
                assert resp.status == 200
                await resp.read()
                named = [w.split("cluster ")[1].split(":")[0] for w in resp.headers.getall("Warning", [])]
                assert named == warned, (params, resp.headers.getall("Warning", []))



async def test_container_image_finds_pods_whose_images_are_too_long_to_index(searched: Api,
                                                                             pool: asyncpg.Pool) -> None:
    """Whether such pods exist is asked in each page's snapshot: one that appears is found."""
    params = {"fieldSelector": "spec.containers[].image=registry.example/tool:1", "limit": "50"}
    _, body = await searched.get("/api/v1/pods", **params)
    assert body["items"] == []
    containers = [{"name": f"c{i}", "image": f"registry.example/{'long-' * 20}{i}:1"} for i in range(40)]
    containers.append({"name": "tool", "image": "registry.example/tool:1"})
    huge = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": containers},
            "metadata": _meta("huge", "default", "huge-uid", "77", BASE, None)}
    await Store(pool).apply_batch(cluster="east", rtype=PODS, events=[{"type": "ADDED", "object": huge}])
    assert await pool.fetchval("SELECT pod_images IS NULL FROM resources WHERE name = 'huge'")
    for path in ("/api/v1/pods", "/api/v1/namespaces/default/pods"):
        _, body = await searched.get(path, **params)
        assert got(body) == [("east", "default", "huge")], path
        status, body = await searched.get(path, fieldSelector=params["fieldSelector"])  # streamed
        assert status == 200 and got(body) == [("east", "default", "huge")], path
