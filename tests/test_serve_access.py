"""``kubepedia serve``'s access flags end to end: a caller known by a host cluster's TokenReview
(kubesim's), kubectl with the kubeconfig ``kubepedia kubeconfig`` prints for a narrow
subject, and anonymous reads (``--anonymous-read``) on and off."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml

import kubesim
from kubepedia.serve import Running, ServeConfig, running
from kubepedia.tls import CERT_FILE
from kubesim.kubeconfig import write_kubeconfig
from tests.apiserver.conftest import fill

KUBECTL = "/usr/bin/kubectl"
BOB = "bob-token-0123456789abcdefgh"  # the token file's: edge's payments namespace only
DAVE = "dave-token-from-the-host-cluster"  # the host cluster's: pods of west
GRANTS = """
grants:
  - users: [bob]
    rules:
      - clusters: [edge]
        namespaces: [payments]
        resources: ["*"]
  - groups: [platform]
    rules:
      - clusters: [west]
        resources: [pods]
  - groups: [system:unauthenticated]
    rules:
      - clusters: [east]
        namespaces: [web]
        resources: [pods]
"""


@asynccontextmanager
async def serving(db_url: str, tmp_path: Path,
                  **access: Any) -> AsyncIterator[tuple[Running, ssl.SSLContext]]:
    """``kubepedia serve`` with the token file (bob), the grants above and ``access``; the
    read API's URL and a client context trusting the certificate it made."""
    (tmp_path / "tokens.csv").write_text(f"{BOB},bob,2\n")
    (tmp_path / "grants.yaml").write_text(GRANTS)
    data_dir = tmp_path / "data"
    config = ServeConfig(database_url=db_url, data_dir=data_dir, api_listen=("127.0.0.1", 0),
                         ingest_listen=("127.0.0.1", 0), admin_listen=("127.0.0.1", 0),
                         token_file=tmp_path / "tokens.csv", grants_file=tmp_path / "grants.yaml", **access)
    async with running(config) as server:
        yield server, ssl.create_default_context(cafile=str(data_dir / CERT_FILE))


async def _get(server: Running, trust: ssl.SSLContext, path: str,
               token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, \
            session.get(server.api + path, ssl=trust, headers=headers) as resp:
        return resp.status, await resp.json()


def _where(body: Any) -> set[tuple[str, str]]:
    return {(i["metadata"]["annotations"]["kubepedia.io/cluster"], i["metadata"]["namespace"])
            for i in body["items"]}


async def test_a_token_the_host_cluster_reviews_reads_its_users_grant(
        db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    await fill(pool, pods_per_namespace=2)
    async with kubesim.running() as host:
        await _add_host_token(host.url, {"token": DAVE, "username": "dave", "uid": "u-4",
                                         "groups": ["platform"]})
        host_kubeconfig = write_kubeconfig(tmp_path / "host.yaml", host.url)
        async with serving(db_url, tmp_path, token_review_kubeconfig=host_kubeconfig) as (server, trust):
            status, body = await _get(server, trust, "/api/v1/pods", DAVE)
            assert status == 200
            assert _where(body) == {("west", ns) for ns in ("default", "payments", "web")}
            status, body = await _get(server, trust, "/apis/apps/v1/deployments", DAVE)
            assert status == 403 and 'User "dave" cannot list' in body["message"]
            # The token file's callers still read theirs beside the host cluster's.
            status, body = await _get(server, trust, "/api/v1/pods", BOB)
            assert status == 200 and _where(body) == {("edge", "payments")}
            status, body = await _get(server, trust, "/api/v1/pods", "a-token-nobody-knows-0123456789")
            assert (status, body["reason"]) == (401, "Unauthorized")


async def _add_host_token(url: str, entry: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as session, session.post(url + "/_kubesim/tokens", json=entry) as resp:
        assert resp.status == 200, await resp.text()


@pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl is not installed")
async def test_kubectl_with_a_narrow_subjects_kubeconfig_lists_only_its_pods(
        db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    synced = await fill(pool, pods_per_namespace=3)
    async with serving(db_url, tmp_path) as (server, _):
        printed = await _run(sys.executable, "-m", "kubepedia", "kubeconfig", "--server", server.api,
                             "--token", BOB, env={"KUBEPEDIA_DATA_DIR": str(tmp_path / "data")})
        doc = yaml.safe_load(printed)
        assert doc["users"] == [{"name": "kubepedia", "user": {"token": BOB}}]
        assert [c["name"] for c in doc["contexts"]] == ["kubepedia", "kubepedia-edge"], "bob's clusters"
        kubeconfig = tmp_path / "bob.yaml"
        kubeconfig.write_text(printed)
        kubectl = (KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"))
        listed = await _run(*kubectl, "get", "pods", "-A", "-o", "name")
        expected = {f"pod/{p['metadata']['name']}" for p in synced["edge"]
                    if p["metadata"]["namespace"] == "payments"}
        assert len(expected) == 3 and sorted(listed.split()) == sorted(expected)
        one = await _run(*kubectl, "--context", "kubepedia-edge", "get", "pods", "-n", "payments",
                         "-o", "name")
        assert set(one.split()) == expected
        refused = await asyncio.to_thread(subprocess.run, [*kubectl, "get", "pods", "-n", "web"],
                                          capture_output=True, text=True, timeout=120, check=False)
        assert refused.returncode == 1 and 'User "bob" cannot list resource "pods"' in refused.stderr


async def _run(*args: str, env: dict[str, str] | None = None) -> str:
    done = await asyncio.to_thread(subprocess.run, list(args), capture_output=True, text=True, timeout=120,
                                   check=False, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_anonymous_reads_get_what_system_unauthenticated_is_granted_and_no_more(
        db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    await fill(pool, pods_per_namespace=2)
    async with serving(db_url, tmp_path, anonymous_read=True) as (server, trust):
        status, body = await _get(server, trust, "/api/v1/pods")
        assert status == 200 and _where(body) == {("east", "web")} and len(body["items"]) == 2
        status, body = await _get(server, trust, "/clusters/east/api/v1/namespaces/web/pods")
        assert status == 200 and len(body["items"]) == 2
        for path in ("/apis/apps/v1/deployments", "/api/v1/nodes", "/api/v1/namespaces/default/pods"):
            status, body = await _get(server, trust, path)
            assert status == 403 and 'User "system:anonymous" cannot list' in body["message"], path
        status, body = await _get(server, trust, "/clusters/west/api/v1/pods")
        assert (status, body["message"]) == (404, 'cluster "west" not found'), "as one that does not exist"
        status, body = await _get(server, trust, "/kubepedia/v1/reports/counts")
        assert status == 200
        assert [(r["cluster"], r["namespace"], r["resource"], r["objects"]) for r in body["items"]] == [
            ("east", "web", "pods", 2)]
        # A token is still a token: bob reads his grant, not the anonymous one.
        status, body = await _get(server, trust, "/api/v1/pods", BOB)
        assert _where(body) == {("edge", "payments")}


async def test_without_anonymous_read_only_health_and_version_answer_without_a_token(
        db_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    await fill(pool, pods_per_namespace=1)
    async with serving(db_url, tmp_path) as (server, trust):
        for path in ("/healthz", "/readyz", "/version"):
            status, _ = await _get(server, trust, path)
            assert status == 200, path
        for path in ("/api/v1/pods", "/clusters/east/api/v1/namespaces/web/pods", "/clusters", "/apis"):
            status, body = await _get(server, trust, path)
            assert (status, body["reason"]) == (401, "Unauthorized"), path
