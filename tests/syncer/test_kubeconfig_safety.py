"""Registered kubeconfigs may not run commands or read files on the syncer's machine,
neither when registered nor when pull mode loads them, unless the server allows it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
import yaml

import kubesim
from kubepedia.clusters import flatten_kubeconfig
from kubesim.kubeconfig import kubeconfig as sim_kubeconfig
from syncer.registry import Kubeconfigs
from syncer.secretbox import SecretBox
from tests.convergence import wait_converged
from tests.e2e.procs import Server, cleanup, start_server
from tests.e2e.test_cluster_cli import kubepedia
from tests.syncer.conftest import Ingest, serving

EXEC_API = "client.authentication.k8s.io/v1beta1"
AUTH_PROVIDER = ('user "kubesim-user" (users[0]): auth-provider runs a plugin that may run commands or '
                 "use this machine's credentials")


def exec_user(marker: Path) -> dict[str, Any]:
    """An exec plugin that leaves ``marker`` behind when it runs, and returns a token."""
    credential = json.dumps({"apiVersion": EXEC_API, "kind": "ExecCredential", "status": {"token": "t"}})
    return {"exec": {"apiVersion": EXEC_API, "command": "sh",
                     "args": ["-c", f"touch {marker}; echo '{credential}'"]}}


def with_user(server: str, user: dict[str, Any], **cluster: Any) -> str:
    doc = sim_kubeconfig(server)
    doc["users"][0]["user"] = user
    doc["clusters"][0]["cluster"].update(cluster)
    return yaml.safe_dump(doc)


async def health(ingest: Ingest, name: str, *, healthy: bool, reason: str = "") -> dict[str, Any]:
    """The cluster's overview entry once its health is ``healthy`` with a message starting
    with ``reason`` (unhealthy ones start as "starting"). The loop only guards against a hang."""
    for _ in range(480):
        _, overview = await ingest.admin("GET", "/admin/v1/clusters")
        entry: dict[str, Any] = next(c for c in overview["clusters"] if c["name"] == name)
        if entry["healthy"] is healthy and (entry["healthMessage"] or "").startswith(reason):
            return entry
        await asyncio.sleep(0.25)
    raise AssertionError(f"health of {name} never became {healthy} ({reason}): {entry}")


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[kubesim.SimServer]:
    async with kubesim.running(generate={"namespaces": 2, "pods": 10}, seed=11) as server:
        yield server


@pytest.mark.parametrize(("user", "cluster", "named"), [
    ("exec", {}, 'user "kubesim-user" (users[0]): exec runs a command'),
    ({"auth-provider": {"name": "gcp", "config": {"cmd-path": "/bin/sh", "cmd-args": "-c id"}}}, {},
     AUTH_PROVIDER),
    ({"auth-provider": {"name": "oidc", "config": {"idp-issuer-url": "https://idp.example", "client-id": "c",
                                                   "refresh-token": "r", "id-token": "x"}}}, {},
     AUTH_PROVIDER),
    ({"tokenFile": "/etc/hostname"}, {}, 'user "kubesim-user" (users[0]): tokenFile reads a file'),
    ({"client-certificate": "/etc/ssl/c.pem", "client-key": "/etc/ssl/k.pem"}, {},
     'user "kubesim-user" (users[0]): client-certificate reads a file; '
     'user "kubesim-user" (users[0]): client-key reads a file'),
    ({"token": "t"}, {"certificate-authority": "/etc/ssl/certs/ca-certificates.crt"},
     'cluster "kubesim" (clusters[0]): certificate-authority reads a file'),
], ids=["exec", "gcp", "oidc", "tokenFile", "client-cert-key", "certificate-authority"])
async def test_registration_refuses_local_references(ingest: Ingest, pool: asyncpg.Pool, tmp_path: Path,
                                                     user: Any, cluster: dict[str, Any], named: str) -> None:
    marker = tmp_path / "ran"
    document = with_user("https://127.0.0.1:9", exec_user(marker) if user == "exec" else user, **cluster)
    status, body = await ingest.admin("POST", "/admin/v1/clusters",
                                      {"name": "risky", "mode": "pull", "kubeconfig": document})
    assert (status, body["kind"], body["reason"], body["code"]) == (422, "Status", "Invalid", 422)
    assert body["message"] == (f"kubeconfig refused: {named} "
                               "(allowed only when the server runs with --allow-kubeconfig-exec)")
    assert await pool.fetchval("SELECT count(*) FROM clusters") == 0
    assert not marker.exists()


async def test_pull_mode_refuses_an_unsafe_stored_kubeconfig(ingest: Ingest, pool: asyncpg.Pool,
                                                             key_file: Path, tmp_path: Path,
                                                             sim: kubesim.SimServer) -> None:
    """A row written behind the registry's back (by SQL, with the key) is checked at load."""
    marker = tmp_path / "ran"
    document = with_user(sim.url, exec_user(marker))
    sealed = SecretBox(key_file).seal(document, context="clusters/sneaky/kubeconfig")
    await pool.execute("INSERT INTO clusters (name, mode, kubeconfig) VALUES ('sneaky', 'pull', $1)", sealed)
    entry = await health(ingest, "sneaky", healthy=False, reason="configuration unusable")
    assert entry["healthMessage"] == (
        'configuration unusable: kubeconfig refused: user "kubesim-user" (users[0]): exec runs a command'
        " (allowed only when the server runs with --allow-kubeconfig-exec)")
    assert not marker.exists()
    assert await pool.fetchval("SELECT count(*) FROM resources") == 0


async def test_with_the_allowance_exec_kubeconfigs_register_and_sync(db_url: str, pool: asyncpg.Pool,
                                                                      key_file: Path, tmp_path: Path,
                                                                      sim: kubesim.SimServer) -> None:
    marker = tmp_path / "ran"
    allowing = Kubeconfigs(box=SecretBox(key_file), allow_local=True)
    async with serving(db_url, allowing) as ingest:
        status, body = await ingest.admin("POST", "/admin/v1/clusters", {
            "name": "trusted", "mode": "pull", "kubeconfig": with_user(sim.url, exec_user(marker))})
        assert status == 201, body
        await wait_converged(pool, "trusted", sim.url, within=120)
        await health(ingest, "trusted", healthy=True)
    assert marker.exists()


def test_the_cli_sends_one_context_with_files_inlined(tmp_path: Path) -> None:
    """``kubepedia cluster add`` runs on the user's machine: it inlines the user's files and
    leaves out the other contexts' users (an exec user among them would be refused)."""
    (tmp_path / "token").write_text("file-token\n")
    (tmp_path / "ca.pem").write_bytes(b"CA")
    doc = sim_kubeconfig("https://127.0.0.1:9")
    doc["users"][0]["user"] = {"tokenFile": "token"}
    doc["clusters"][0]["cluster"]["certificate-authority"] = "ca.pem"
    doc["users"].append({"name": "cloud", "user": exec_user(tmp_path / "ran")})
    doc["clusters"].append({"name": "cloud", "cluster": {"server": "https://cloud"}})
    doc["contexts"].append({"name": "cloud", "context": {"cluster": "cloud", "user": "cloud"}})
    doc["current-context"] = "cloud"
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(doc))
    sent = yaml.safe_load(flatten_kubeconfig(path, context="kubesim"))
    assert sent["current-context"] == "kubesim"
    assert [c["name"] for c in sent["contexts"]] == ["kubesim"]
    assert sent["users"] == [{"name": "kubesim-user", "user": {"token": "file-token"}}]
    assert sent["clusters"][0]["cluster"] == {"server": "https://127.0.0.1:9",
                                              "certificate-authority-data": "Q0E="}


async def _allowing_server(tmp: Path, db_url: str) -> Server:
    return await start_server(tmp, "allowing", database_url=db_url,
                              env={"KUBEPEDIA_ALLOW_KUBECONFIG_EXEC": "1"})


async def test_serve_refuses_exec_unless_told_and_warns_when_told(tmp_path: Path, db_url: str) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "exec.kubeconfig"
    path.write_text(with_user("http://127.0.0.1:9", exec_user(marker)))
    strict = await start_server(tmp_path, "strict", database_url=db_url)
    async with cleanup(strict.proc) as procs:
        code, _, err = await kubepedia(strict, "add", "cloud", "--kubeconfig", str(path))
        assert code == 1
        assert err == ('kubepedia: kubeconfig refused: user "kubesim-user" (users[0]): exec runs a command '
                       "(allowed only when the server runs with --allow-kubeconfig-exec)\n")
        assert "allow-kubeconfig-exec" not in strict.proc.output()
        await strict.proc.stop()
        allowing = await _allowing_server(tmp_path, db_url)
        procs.append(allowing.proc)
        warnings = [line for line in allowing.proc.output().splitlines() if " WARNING " in line]
        assert any("--allow-kubeconfig-exec" in line for line in warnings), warnings
        code, out, err = await kubepedia(allowing, "add", "cloud", "--kubeconfig", str(path))
        assert code == 0 and "registered (pull)" in out, err
        for _ in range(240):  # pull mode loads it, running the plugin (a hang guard, not a bound)
            if marker.exists():
                break
            await asyncio.sleep(0.25)
        assert marker.exists()
