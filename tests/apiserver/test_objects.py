"""Kubernetes object paths across clusters: lists, selectors, pages, gets, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson
import pytest

from apiserver.app import build_app
from kube.selectors import field_values, parse_field_selector, parse_label_selector
from syncer.ingest import Store
from tests.access import AUTH, granted
from tests.apiserver.conftest import CLUSTERS, NAMESPACES, Api, cluster_pods, fill, serving
from tests.factories import PODS, pod

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
Synced = dict[str, list[dict[str, Any]]]


def _keys(items: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(i["metadata"].get("namespace", ""), i["metadata"]["name"],
             i["metadata"]["annotations"]["kubepedia.io/cluster"]) for i in items]


def _expected(filled: Synced, *, labels: str = "", fields: str = "", namespace: str | None = None,
              cluster: str | None = None) -> list[tuple[str, str, str]]:
    """What a list must hold, by a plain Python filter over what was synced."""
    lsel, fsel = parse_label_selector(labels), parse_field_selector(fields, "Pod")
    out = [(p["metadata"]["namespace"], p["metadata"]["name"], c)
           for c, pods in filled.items() if cluster in (None, c) for p in pods
           if namespace in (None, p["metadata"]["namespace"])
           and lsel.matches(p["metadata"]["labels"]) and fsel.matches(field_values("Pod", p))]
    return sorted(out)


async def test_list_merges_every_cluster(api: Api, filled: Synced) -> None:
    status, body = await api.get("/api/v1/pods")
    assert status == 200, body
    assert body["kind"] == "PodList" and body["apiVersion"] == "v1"
    assert int(body["metadata"]["resourceVersion"]) > 0
    assert _keys(body["items"]) == _expected(filled)
    item = body["items"][0]
    cluster = item["metadata"]["annotations"]["kubepedia.io/cluster"]
    assert item["metadata"]["annotations"]["shadow.clusterpedia.io/cluster-name"] == cluster
    assert item["metadata"]["resourceVersion"] in {p["metadata"]["resourceVersion"] for p in filled[cluster]}


@pytest.mark.parametrize(("labels", "fields"), [
    ("tier=front", ""), ("app in (app1,app2),tier!=front", ""), ("!tier", ""), ("app notin (app0)", ""),
    ("", "spec.nodeName=east-node-1"), ("", "status.phase!=Running"), ("tier", "metadata.name=pay-003"),
    ("", "metadata.namespace=web,spec.nodeName!=west-node-0"),
    ("app=app1", ""), ("app=app1,tier=front", ""), ("app=nothing", ""),  # app has an ordered index
])
async def test_selectors_match_a_plain_filter(api: Api, filled: Synced, labels: str, fields: str) -> None:
    status, body = await api.get("/api/v1/pods", labelSelector=labels, fieldSelector=fields)
    assert status == 200, body
    assert _keys(body["items"]) == _expected(filled, labels=labels, fields=fields)


async def test_namespace_and_cluster_paths(api: Api, filled: Synced) -> None:
    status, body = await api.get("/api/v1/namespaces/payments/pods")
    assert status == 200 and _keys(body["items"]) == _expected(filled, namespace="payments")
    status, body = await api.get("/clusters/west/api/v1/namespaces/web/pods", labelSelector="tier=back")
    assert status == 200
    assert _keys(body["items"]) == _expected(filled, namespace="web", cluster="west", labels="tier=back")
    status, body = await api.get("/clusters/west/api/v1/nodes")
    assert [i["metadata"]["name"] for i in body["items"]] == ["west-node-0", "west-node-1"]


async def test_clusters_parameter(api: Api, filled: Synced) -> None:
    status, body = await api.get("/api/v1/pods", clusters="east,edge", labelSelector="tier=front")
    assert status == 200
    expected = [k for k in _expected(filled, labels="tier=front") if k[2] in ("east", "edge")]
    assert _keys(body["items"]) == expected and expected
    for bad in ("", ",", "East", "a" * 64, ",".join(f"c{i}" for i in range(1001))):
        status, body = await api.get("/api/v1/pods", clusters=bad)
        assert status == 400 and body["kind"] == "Status", bad


async def test_pages_walk_everything_once(api: Api, filled: Synced) -> None:
    seen: list[tuple[str, str, str]] = []
    params = {"limit": "7"}
    versions = set()
    while True:
        status, body = await api.get("/api/v1/pods", **params)
        assert status == 200, body
        assert len(body["items"]) <= 7
        seen += _keys(body["items"])
        versions.add(body["metadata"]["resourceVersion"])
        token = body["metadata"].get("continue")
        if not token:
            break
        params = {"limit": "7", "continue": token}
    assert seen == _expected(filled)
    assert len(versions) == 1  # every page reports the first page's resourceVersion


async def _walk(api: Api, path: str, headers: dict[str, str] | None = None,
                **params: str) -> list[tuple[int, dict[str, Any]]]:
    """Every page of a paged list: (how many objects it holds, its list metadata)."""
    pages: list[tuple[int, dict[str, Any]]] = []
    query = dict(params)
    while True:
        status, body, _ = await api.request("GET", path, params=query, headers=headers)
        assert status == 200, body
        pages.append((len(body["items"] if "items" in body else body["rows"]), body["metadata"]))
        if not body["metadata"].get("continue"):
            return pages
        query = {**params, "continue": body["metadata"]["continue"]}


def _served_and_counted(pages: list[tuple[int, dict[str, Any]]], total: int) -> list[tuple[int, int | None]]:
    """Per page: how many objects really follow it, and the remainingItemCount it claims."""
    out, served = [], 0
    for count, meta in pages:
        served += count
        out.append((total - served, meta.get("remainingItemCount")))
    return out


async def test_pages_tell_how_many_objects_follow(api: Api, filled: Synced) -> None:
    total = len(_expected(filled))
    pages = await _walk(api, "/api/v1/pods", limit="7")
    claims = _served_and_counted(pages, total)
    # Exact on every page but the last, which leaves it unset (nothing follows).
    assert claims == [(left, left or None) for left, _ in claims] and len(claims) > 2
    narrowed = await _walk(api, "/clusters/west/api/v1/namespaces/web/pods", limit="5")
    assert [meta.get("remainingItemCount") for _, meta in narrowed] == [7, 2, None]
    _, body, _ = await api.request("GET", "/api/v1/pods", params={"limit": "100"}, headers={"Accept": TABLE})
    assert body["kind"] == "Table" and body["metadata"]["remainingItemCount"] == total - 100


@pytest.mark.parametrize(("labels", "fields"), [("tier=back", ""), ("", "status.phase=Running")])
async def test_pages_with_selectors_leave_the_count_unset(api: Api, filled: Synced, labels: str,
                                                          fields: str) -> None:
    pages = await _walk(api, "/api/v1/pods", limit="5", labelSelector=labels, fieldSelector=fields)
    assert len(pages) > 2
    assert all("remainingItemCount" not in meta for _, meta in pages)


async def test_the_count_stops_at_its_cap(db_url: str, filled: Synced) -> None:
    total = len(_expected(filled))
    async with serving(build_app(database_url=db_url, access=granted(), remaining_count_cap=10)) as capped:
        claims = _served_and_counted(await _walk(capped, "/api/v1/pods", limit="7"), total)
    # Counted below the cap, unset at or above it (and on the last page).
    assert claims == [(left, left if 0 < left < 10 else None) for left, _ in claims]
    assert any(c is None for _, c in claims[:-1]) and any(c is not None for _, c in claims)


async def test_continue_tokens_are_tamper_evident(api: Api, filled: Synced) -> None:
    _, body = await api.get("/api/v1/pods", limit="5")
    token = body["metadata"]["continue"]
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for path, params in (("/api/v1/pods", {"continue": forged}),
                         ("/api/v1/pods", {"continue": token, "labelSelector": "tier=front"}),
                         ("/api/v1/namespaces/web/pods", {"continue": token}),
                         ("/api/v1/pods", {"continue": "garbage"})):
        status, body = await api.get(path, limit="5", **params)
        assert status == 400, (path, params, body)
        assert body["kind"] == "Status" and body["reason"] == "BadRequest"


async def test_get_by_name(api: Api, filled: Synced) -> None:
    status, body = await api.get("/apis/apps/v1/namespaces/web/deployments/only")
    assert status == 200, body
    assert body["metadata"]["annotations"]["kubepedia.io/cluster"] == "edge"
    status, body = await api.get("/apis/apps/v1/namespaces/web/deployments/api")
    assert status == 409 and body["kind"] == "Status"
    assert all(c in body["message"] for c in CLUSTERS)
    status, body = await api.get("/clusters/west/apis/apps/v1/namespaces/web/deployments/api")
    assert status == 200 and body["metadata"]["annotations"]["kubepedia.io/cluster"] == "west"
    status, body = await api.get("/apis/apps/v1/namespaces/web/deployments/missing")
    assert status == 404 and body["reason"] == "NotFound"
    assert body["message"] == 'deployments.apps "missing" not found'
    status, body = await api.get("/api/v1/nodes/east-node-1")
    assert status == 200 and body["kind"] == "Node"


async def test_table_has_a_cluster_column(api: Api, filled: Synced) -> None:
    status, body, _ = await api.request("GET", "/api/v1/namespaces/default/pods",
                                        params={"limit": "4"}, headers={"Accept": TABLE})
    assert status == 200 and body["kind"] == "Table"
    names = [c["name"] for c in body["columnDefinitions"]]
    assert names[:6] == ["Cluster", "Name", "Ready", "Status", "Restarts", "Age"]
    first = body["rows"][0]
    assert first["cells"][0] in CLUSTERS and first["object"]["kind"] == "PartialObjectMetadata"
    assert body["metadata"].get("continue")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_writes_are_refused(api: Api, filled: Synced, method: str) -> None:
    status, body, _ = await api.request(method, "/api/v1/namespaces/default/pods/def-001")
    assert status == 405 and body["kind"] == "Status" and body["reason"] == "MethodNotAllowed"


@pytest.mark.parametrize(("path", "params", "code"), [
    ("/api/v1/pods", {"labelSelector": "a in (x"}, 400),
    ("/api/v1/pods", {"labelSelector": "a=(b"}, 400),
    ("/api/v1/pods", {"fieldSelector": "spec.unknown~x"}, 400),  # spec.unknown=x is a JSON path
    ("/api/v1/pods", {"fieldSelector": "non sense"}, 400),  # nonsense alone: "nonsense exists"
    ("/api/v1/pods", {"limit": "abc"}, 400),
    ("/api/v1/pods", {"limit": "-1"}, 400),
    ("/api/v1/pods", {"resourceVersion": "abc"}, 400),
    ("/api/v1/pods", {"resourceVersion": "999999999"}, 504),
    ("/api/v1/pods", {"resourceVersionMatch": "Exact"}, 400),
    ("/api/v1/pods", {"resourceVersionMatch": "Sometimes", "resourceVersion": "1"}, 400),
    ("/api/v1/pods", {"includeObject": "Everything"}, 400),
    ("/api/v1/pods", {"watch": "perhaps"}, 400),
    ("/api/v1/pods", {"timeoutSeconds": "soon"}, 400),
    ("/api/v1/pods", {"limit": "\u00b2"}, 400),
    ("/api/v1/pods", {"resourceVersion": "\u00b9"}, 400),
    ("/api/v1/pods", {"labelSelector": "a>" + "9" * 30}, 400),
    ("/api/v1/pods", {"labelSelector": "a<" + "9" * 5000}, 400),
    ("/api/v1/widgets", {}, 404),
    ("/api/v2/pods", {}, 404),
    ("/apis/nothing.example/v1/things", {}, 404),
    ("/clusters/nowhere/api/v1/pods", {}, 404),
    ("/api/v1/namespaces/default/nodes", {}, 404),
    ("/api/v1/pods/name-without-namespace", {}, 404),
    ("/api/v1/namespaces/default/pods/p/status", {}, 404),
    ("/nothing/here", {}, 404),
])
async def test_bad_requests_answer_a_status(api: Api, filled: Synced, path: str, params: dict[str, str],
                                            code: int) -> None:
    status, body = await api.get(path, **params)
    assert status == code, body
    assert body["kind"] == "Status" and body["code"] == code


async def test_unlimited_list_streams_every_page(api: Api, filled: Synced,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from apiserver import objects

    monkeypatch.setattr(objects, "STREAM_PAGE", 10)  # many internal pages for a small store
    status, body = await api.get("/api/v1/pods")
    assert status == 200
    assert _keys(body["items"]) == _expected(filled)
    assert len(NAMESPACES) * len(CLUSTERS) * 12 == len(body["items"])


PARTIAL_LIST = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"


@pytest.mark.parametrize(("accept", "include"), [(TABLE, ""), (TABLE, "None"), (PARTIAL_LIST, "")])
async def test_unlimited_shaped_lists_stream_what_pages_return(api: Api, pool: asyncpg.Pool, accept: str,
                                                               include: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from apiserver import objects

    await fill(pool, pods_per_namespace=40)
    monkeypatch.setattr(objects, "STREAM_PAGE", 25)  # many internal pages
    params = {"includeObject": include} if include else {}
    async with api.session.get(api.url + "/api/v1/pods", params=params, headers={"Accept": accept}) as resp:
        assert resp.status == 200
        # Streamed: written page by page, so the length is not known when the response starts.
        assert "Content-Length" not in resp.headers and resp.headers["Transfer-Encoding"] == "chunked"
        whole = orjson.loads(await resp.read())
    key = "rows" if accept == TABLE else "items"
    paged: list[Any] = []
    query = {"limit": "33", **params}
    while True:
        status, body, _ = await api.request("GET", "/api/v1/pods", params=query, headers={"Accept": accept})
        assert status == 200 and body["kind"] == whole["kind"]
        paged += body[key]
        if not body["metadata"].get("continue"):
            break
        query = {"limit": "33", "continue": body["metadata"]["continue"], **params}
    assert len(whole[key]) == len(paged) == 3 * 3 * 40
    assert whole[key] == paged
    assert whole.get("columnDefinitions") == body.get("columnDefinitions")
    assert set(whole["metadata"]) == {"resourceVersion"}


async def _raw_get(url: str, path: str, accept: str) -> bytes:
    """The bytes a server sends for one GET, up to the connection's end."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\nConnection: close\r\n"
                 f"Authorization: {AUTH['Authorization']}\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    await writer.wait_closed()
    return data


async def test_a_failure_after_a_stream_began_breaks_the_connection(api: Api, pool: asyncpg.Pool,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """No Status can follow the first bytes: the client must see a broken body, not a second
    response written into the first one, nor a list that looks complete."""
    from apiserver import objects

    await fill(pool, pods_per_namespace=4)
    # An object no kube-apiserver would accept breaks the Table printer on a later page.
    broken = pod("zzz-broken", 1, namespace="web", status={"containerStatuses": ["not an object"]})
    async with Store(pool).snapshot(cluster="west", rtype=PODS) as snap:
        await snap.add([*cluster_pods("west", 4), broken])
        await snap.end("2000")
    monkeypatch.setattr(objects, "STREAM_PAGE", 5)
    data = await _raw_get(api.url, "/api/v1/pods", TABLE)
    assert data.startswith(b"HTTP/1.1 200 ") and b'"kind":"Table"' in data
    assert data.count(b"HTTP/1.1 ") == 1
    assert not data.endswith(b"\r\n0\r\n\r\n")  # the chunked body never ends properly
