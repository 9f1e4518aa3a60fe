"""Kubeconfig documents handed over by others may not run commands or read local files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import errors
from agent.kubeclient import connection_from_document, load_connection
from agent.kubeconfig_policy import KubeconfigRefused, local_references

EXEC_API = "client.authentication.k8s.io/v1beta1"


def document(*, user: dict[str, Any], cluster: dict[str, Any] | None = None,
             server: str = "http://127.0.0.1:9") -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "clusters": [{"name": "sim", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "sim", "user": "u"}}],
    }


def exec_user(marker: Path, token: str = "from-plugin") -> dict[str, Any]:
    """An exec plugin that leaves ``marker`` behind when it runs."""
    credential = json.dumps({"apiVersion": EXEC_API, "kind": "ExecCredential", "status": {"token": token}})
    return {"exec": {"apiVersion": EXEC_API, "command": "sh",
                     "args": ["-c", f"touch {marker}; echo '{credential}'"]}}


def test_exec_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(KubeconfigRefused) as refused:
        connection_from_document(yaml.safe_dump(document(user=exec_user(marker))))
    assert str(refused.value) == 'kubeconfig refused: user "u" (users[0]): exec runs a command'
    assert not marker.exists()


@pytest.mark.parametrize(("user", "cluster", "field"), [
    ({"tokenFile": "/etc/hostname"}, None, 'user "u" (users[0]): tokenFile reads a file'),
    ({"client-certificate": "/etc/ssl/c.pem", "client-key": "/etc/ssl/k.pem"}, None,
     'user "u" (users[0]): client-certificate reads a file'),
    ({"client-key": "k.pem"}, None, 'user "u" (users[0]): client-key reads a file'),
    ({"auth-provider": {"name": "gcp", "config": {"cmd-path": "/bin/sh"}}}, None,
     'user "u" (users[0]): auth-provider runs a plugin'),
    ({"auth-provider": {"name": "oidc", "config": {"idp-issuer-url": "https://idp", "client-id": "x",
                                                   "refresh-token": "r", "id-token": "t"}}}, None,
     'user "u" (users[0]): auth-provider runs a plugin'),
    ({"token": "t"}, {"certificate-authority": "/etc/ssl/ca.pem"},
     'cluster "sim" (clusters[0]): certificate-authority reads a file'),
], ids=["tokenFile", "client-certificate", "client-key", "gcp", "oidc", "certificate-authority"])
def test_local_references_are_refused(user: dict[str, Any], cluster: dict[str, Any] | None,
                                      field: str) -> None:
    text = yaml.safe_dump(document(user=user, cluster=cluster, server="https://127.0.0.1:9"))
    with pytest.raises(KubeconfigRefused, match="kubeconfig refused") as refused:
        connection_from_document(text)
    assert any(problem.startswith(field) for problem in refused.value.problems), refused.value.problems


def test_every_entry_is_checked_not_only_the_current_one(tmp_path: Path) -> None:
    doc = document(user={"token": "t"})
    doc["users"].append({"name": "other", "user": exec_user(tmp_path / "ran")})
    doc["users"].append("not a mapping")
    assert local_references(doc) == ['user "other" (users[1]): exec runs a command',
                                     "users[2] is not a mapping"]


def test_inline_credentials_pass() -> None:
    ca = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="
    for user in ({"token": "t"}, {"username": "a", "password": "b"}):
        doc = document(user=user, cluster={"insecure-skip-tls-verify": True, "proxy-url": "http://p:3128",
                                           "tls-server-name": "kube"})
        assert local_references(doc) == []
        assert connection_from_document(yaml.safe_dump(doc)).server == "http://127.0.0.1:9"
    doc = document(user={"client-certificate-data": ca, "client-key-data": ca},
                   cluster={"certificate-authority-data": ca})
    assert local_references(doc) == []


async def test_allowed_exec_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    connection = connection_from_document(yaml.safe_dump(document(user=exec_user(marker))),
                                          allow_local=True)
    assert marker.exists()
    assert await connection.auth_headers() == {"Authorization": "Bearer from-plugin"}


async def test_the_operators_own_kubeconfig_may_exec(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(document(user=exec_user(marker))))
    connection = load_connection(kubeconfig=str(path))
    assert marker.exists()
    assert await connection.auth_headers() == {"Authorization": "Bearer from-plugin"}


def test_yaml_errors_do_not_quote_the_document() -> None:
    with pytest.raises(errors.KubeClientError) as failed:
        connection_from_document("users:\n- user: {token: s3cr3t-value\n  bad: [\n")
    assert "s3cr3t" not in str(failed.value) and "line" in str(failed.value)
