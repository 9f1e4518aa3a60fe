"""Access control over real HTTP and a real store: tokens, grants, and that nothing outside
a caller's grant is listed, counted, watched or found in history."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from apiserver.access import Access, GrantsFile
from apiserver.app import build_app
from apiserver.auth import TokenFile
from apiserver.grants import parse_grants
from apiserver.reloading import FileProblem
from syncer.ingest import Store
from tests.apiserver.conftest import Api, fill, serving, watching
from tests.factories import PODS, SECRETS, event, pod

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdefgh"
CAROL = "carol-token-0123456789abcdef"
TOKENS = f"""# token,user,uid,groups
{ALICE},alice,1,"pod-readers"
{BOB},bob,2
{CAROL},carol,3,"auditors"
"""
# alice: pods in east and west. bob: every type (but secrets) in namespace payments of edge.
# carol (by her group): secrets in east's default namespace, and every other type there.
GRANTS = """
grants:
  - groups: [pod-readers]
    rules:
      - clusters: [east, west]
        resources: [pods]
  - users: [bob]
    rules:
      - clusters: [edge]
        namespaces: [payments]
        resources: ["*"]
  - groups: [auditors]
    rules:
      - clusters: [east]
        namespaces: [default]
        resources: ["*", secrets]
"""


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest_asyncio.fixture
async def files(tmp_path: Path) -> tuple[Path, Path]:
    tokens, grants = tmp_path / "tokens.csv", tmp_path / "grants.yaml"
    tokens.write_text(TOKENS)
    grants.write_text(GRANTS)
    return tokens, grants


@pytest_asyncio.fixture
async def guarded(db_url: str, pool: asyncpg.Pool, files: tuple[Path, Path]) -> AsyncIterator[Api]:
    await fill(pool, pods_per_namespace=4)
    tokens, grants = files
    access = Access(authenticators=(TokenFile(tokens, interval=0),), grants=GrantsFile(grants, interval=0))
    async with serving(build_app(database_url=db_url, access=access)) as api:
        yield api


async def _get(api: Api, path: str, token: str | None, **params: str) -> tuple[int, Any]:
    headers = _auth(token) if token else {"Authorization": "Bearer not-a-token-of-ours-at-all"}
    status, body, _ = await api.request("GET", path, params=params, headers=headers)
    return status, body


def _who(items: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(i["metadata"]["annotations"]["kubepedia.io/cluster"], i["metadata"].get("namespace", ""))
            for i in items}


async def test_without_a_token_only_health_and_version_answer(db_url: str, files: tuple[Path, Path]) -> None:
    tokens, grants = files
    access = Access(authenticators=(TokenFile(tokens),), grants=GrantsFile(grants))
    async with serving(build_app(database_url=db_url, access=access)) as api:
        for path in ("/healthz", "/readyz", "/version"):
            status, _, _ = await api.request("GET", path, headers={"Authorization": ""})
            assert status == 200, path
        anonymous = {"Authorization": ""}  # the session's own token is replaced by nothing
        for path in ("/api/v1/pods", "/clusters", "/apis", "/kubepedia/v1/reports/counts",
                     "/clusters/east/version", "/kubepedia/v1/history/changes"):
            for headers in (anonymous, _auth("wrong-token-0123456789"), {"Authorization": f"Basic {ALICE}"}):
                status, body, _ = await api.request("GET", path, headers=headers)
                assert (status, body["reason"], body["kind"]) == (401, "Unauthorized", "Status"), path


async def test_each_subject_lists_only_its_grant(guarded: Api) -> None:
    status, body = await _get(guarded, "/api/v1/pods", ALICE)
    assert status == 200 and _who(body["items"]) == {(c, ns) for c in ("east", "west")
                                                     for ns in ("default", "payments", "web")}
    status, body = await _get(guarded, "/api/v1/pods", BOB)
    assert status == 200 and _who(body["items"]) == {("edge", "payments")} and len(body["items"]) == 4
    status, body = await _get(guarded, "/apis/apps/v1/deployments", BOB)
    assert status == 200 and _who(body["items"]) == {("edge", "payments")}
    # A list narrowed by parameters stays within the grant.
    status, body = await _get(guarded, "/api/v1/pods", ALICE, clusters="edge,west")
    assert _who(body["items"]) == {("west", ns) for ns in ("default", "payments", "web")}


async def test_a_type_granted_nowhere_on_the_path_is_forbidden_as_kubernetes_words_it(guarded: Api) -> None:
    status, body = await _get(guarded, "/apis/apps/v1/deployments", ALICE)
    assert (status, body["reason"]) == (403, "Forbidden")
    assert body["message"] == ('deployments is forbidden: User "alice" cannot list resource "deployments"'
                               ' in API group "apps" at the cluster scope')
    status, body = await _get(guarded, "/api/v1/namespaces/web/pods", BOB)
    assert status == 403 and body["message"] == ('pods is forbidden: User "bob" cannot list resource "pods"'
                                                 ' in API group "" in the namespace "web"')
    status, body = await _get(guarded, "/api/v1/nodes", BOB)  # cluster-scoped: not in a namespace grant
    assert status == 403


async def test_a_hidden_object_answers_as_a_missing_one(guarded: Api, pool: asyncpg.Pool) -> None:
    # pay-000 exists in every cluster; bob may read edge's only.
    status, body = await _get(guarded, "/clusters/east/api/v1/namespaces/payments/pods/pay-000", BOB)
    missing_cluster = await _get(guarded, "/clusters/nowhere/api/v1/namespaces/payments/pods/pay-000", BOB)
    assert (status, body["message"]) == (404, 'cluster "east" not found')
    assert missing_cluster[0] == 404 and missing_cluster[1]["message"] == 'cluster "nowhere" not found'
    status, body = await _get(guarded, "/api/v1/namespaces/payments/pods/pay-000", ALICE)
    assert status == 409  # in east and west, both alice's: named; edge's is not
    assert {c["message"] for c in body["details"]["causes"]} == {"east", "west"}
    hidden = await _get(guarded, "/clusters/west/api/v1/namespaces/payments/pods/pay-000", BOB)
    assert hidden[0] == 404
    status, body = await _get(guarded, "/api/v1/namespaces/payments/pods/pay-000", BOB)
    assert status == 200 and body["metadata"]["annotations"]["kubepedia.io/cluster"] == "edge"
    # A pod that exists only outside the grant reads exactly as one that does not exist.
    await Store(pool).apply_batch(cluster="east", rtype=PODS,
                                  events=[event("ADDED", pod("east-only", 700, namespace="payments"))])
    hidden = await _get(guarded, "/api/v1/namespaces/payments/pods/east-only", BOB)
    gone = await _get(guarded, "/api/v1/namespaces/payments/pods/no-such-pod", BOB)
    assert hidden[0] == gone[0] == 404
    assert (hidden[1]["message"].replace("east-only", "NAME")
            == gone[1]["message"].replace("no-such-pod", "NAME"))


async def test_a_continue_token_replayed_by_another_caller_reads_only_its_grant(guarded: Api) -> None:
    status, body = await _get(guarded, "/api/v1/pods", ALICE, limit="3")
    assert status == 200 and body["metadata"]["continue"]
    token = body["metadata"]["continue"]
    status, body = await _get(guarded, "/api/v1/pods", BOB, limit="100", **{"continue": token})
    assert status == 200 and _who(body["items"]) <= {("edge", "payments")}


async def test_counts_and_reports_count_only_the_grant(guarded: Api) -> None:
    status, body = await _get(guarded, "/kubepedia/v1/reports/counts", BOB)
    assert status == 200
    assert {(r["cluster"], r["namespace"]) for r in body["items"]} == {("edge", "payments")}
    assert sum(r["objects"] for r in body["items"] if r["resource"] == "pods") == 4
    status, body = await _get(guarded, "/kubepedia/v1/reports/pods", ALICE)
    assert {r["cluster"]: r["pods"] for r in body["items"]} == {"east": 12, "west": 12}
    status, body = await _get(guarded, "/kubepedia/v1/reports/clusters", BOB)
    # bob's grant is one namespace: edge is listed, but its per-type figures are not his to see.
    assert [(r["cluster"], r["types"], r["objects"]) for r in body["items"]] == [("edge", 0, 0)]
    status, body = await _get(guarded, "/clusters", BOB)
    assert [c["name"] for c in body["items"]] == ["edge"]


async def test_search_and_collections_keep_to_the_grant(guarded: Api) -> None:
    status, body = await _get(guarded, "/apis/clusterpedia.io/v1beta1/collectionresources/workloads", BOB)
    assert status == 200 and _who(body["items"]) == {("edge", "payments")}
    fuzzy = "internalstorage.clusterpedia.io/fuzzy-name=00"
    status, body = await _get(guarded, "/api/v1/pods", BOB, labelSelector=fuzzy, withRemainingCount="true",
                              limit="1")
    assert _who(body["items"]) == {("edge", "payments")}
    assert body["metadata"]["remainingItemCount"] == 3  # edge's pay-001..003; the other clusters' hidden


async def test_history_of_a_hidden_object_is_not_readable(guarded: Api, pool: asyncpg.Pool) -> None:
    changed = pod("pay-000", 500, namespace="payments", uid="east-payments-0", labels={"step": "one"})
    await Store(pool).apply_batch(cluster="east", rtype=PODS, events=[event("MODIFIED", changed)])
    query = {"cluster": "east", "group": "", "resource": "pods", "namespace": "payments", "name": "pay-000"}
    status, body = await _get(guarded, "/kubepedia/v1/history/object", ALICE, **query)
    assert status == 200 and body["items"]
    status, body = await _get(guarded, "/kubepedia/v1/history/object", BOB, **query)
    assert status == 404 or not body["items"]
    status, body = await _get(guarded, "/kubepedia/v1/history/changes", BOB)
    assert status == 200 and not [i for i in body["items"] if i.get("cluster") != "edge"]


async def test_a_watch_never_delivers_a_hidden_object(guarded: Api, pool: asyncpg.Pool) -> None:
    _, body = await _get(guarded, "/api/v1/pods", BOB, limit="1")
    rv = body["metadata"]["resourceVersion"]
    async with watching(guarded, "/api/v1/pods", headers=_auth(BOB), resourceVersion=rv) as events:
        store = Store(pool)
        await store.apply_batch(cluster="east", rtype=PODS,
                                events=[event("ADDED", pod("secret-plan", 600, namespace="payments"))])
        await store.apply_batch(cluster="edge", rtype=PODS,
                                events=[event("ADDED", pod("hidden-web", 601, namespace="web"))])
        await store.apply_batch(cluster="edge", rtype=PODS,
                                events=[event("ADDED", pod("visible", 602, namespace="payments"))])
        got = await asyncio.wait_for(events.get(), 30)
        assert got["object"]["metadata"]["name"] == "visible"
        with contextlib.suppress(TimeoutError):
            extra = await asyncio.wait_for(events.get(), 1)
            assert extra["type"] == "BOOKMARK", extra


def _secret(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": "default", "uid": f"s-{name}", "resourceVersion": "5"},
            "data": {"password": "aHVudGVyMg=="}, "stringData": {"k": "v"}}


async def test_secrets_are_stored_without_data_and_served_only_to_an_explicit_grant(
        guarded: Api, pool: asyncpg.Pool) -> None:
    async with Store(pool).snapshot(cluster="east", rtype=SECRETS) as snap:
        await snap.add([_secret("db")])
        await snap.end("5")
    stored = await pool.fetchval("SELECT object::text FROM resources WHERE resource = 'secrets'")
    assert "aHVudGVyMg" not in stored and "stringData" not in stored
    status, body = await _get(guarded, "/api/v1/secrets", BOB)  # "*" does not include secrets
    assert status == 403
    status, body = await _get(guarded, "/api/v1/namespaces/default/secrets", CAROL)
    assert status == 200 and [i["metadata"]["name"] for i in body["items"]] == ["db"]
    assert "data" not in body["items"][0]
    status, body = await _get(guarded, "/kubepedia/v1/reports/counts", ALICE)
    assert not [r for r in body["items"] if r["resource"] == "secrets"]
    status, body = await _get(guarded, "/apis/clusterpedia.io/v1beta1/collectionresources/kuberesources", BOB)
    assert not [i for i in body["items"] if i.get("kind") == "Secret"]


async def test_grants_are_reloaded_and_a_bad_file_keeps_the_previous(guarded: Api,
                                                                     files: tuple[Path, Path]) -> None:
    _, grants = files
    grants.write_text(GRANTS.replace("clusters: [east, west]", "clusters: [west]"))
    status, body = await _get(guarded, "/api/v1/pods", ALICE)
    assert {c for c, _ in _who(body["items"])} == {"west"}
    grants.write_text("grants: [{users: [alice], rules: [{resources: [pods], colour: red}]}]")
    status, body = await _get(guarded, "/api/v1/pods", ALICE)
    assert status == 200 and {c for c, _ in _who(body["items"])} == {"west"}


async def test_the_token_file_is_reloaded(guarded: Api, files: tuple[Path, Path]) -> None:
    tokens, _ = files
    assert (await _get(guarded, "/api/v1/pods", ALICE))[0] == 200
    tokens.write_text(TOKENS.replace(ALICE, "alice-new-token-0123456789"))
    assert (await _get(guarded, "/api/v1/pods", ALICE))[0] == 401
    assert (await _get(guarded, "/api/v1/pods", "alice-new-token-0123456789"))[0] == 200


@pytest.mark.parametrize("text, problem", [
    ("grants: [{users: [a], rules: [{resources: [pods], colour: red}]}]", "unknown field 'colour'"),
    ("grants: [{rules: [{resources: [pods]}]}]", "names no users and no groups"),
    ("grants: [{users: [a], rules: [{clusters: [], resources: [pods]}]}]", "grants[0].rules[0].clusters"),
    ("grants: [{users: [a], rules: [{resources: ['*', pods]}]}]", "only secrets may be named"),
    ("grants: [{users: [a], rules: [{}]}]", "resources: required"),
    ("nope: []", "one key, grants"),
    ("grants: [", "not YAML"),
])
def test_a_bad_grants_file_is_refused_with_where_it_is_wrong(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        parse_grants(text)
    assert problem in str(caught.value)
    path = tmp_path / "grants.yaml"
    path.write_text(text)
    with pytest.raises(FileProblem) as refused:
        GrantsFile(path)
    assert str(path) in str(refused.value)
