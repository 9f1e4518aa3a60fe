"""Plain credentials are read without the kubernetes package, as that package reads them."""

from __future__ import annotations

import base64
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import credentials
from agent.credentials import CredentialsError, NeedsPlugin
from agent.kubeclient import connection_from_credentials, load_connection

HEAVY = ("kubernetes", "syncer", "apiserver", "sqlalchemy", "asyncpg", "pydantic")


def write(path: Path, *, user: dict[str, Any], cluster: dict[str, Any] | None = None,
          current: str | None = "ctx") -> Path:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://10.1.2.3:6443/", **(cluster or {})}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}},
                     {"name": "anonymous", "context": {"cluster": "c"}}],
    }
    if current:
        config["current-context"] = current
    path.write_text(yaml.safe_dump(config))
    return path


def test_tokens_and_passwords(tmp_path: Path) -> None:
    found = credentials.from_kubeconfig(str(write(tmp_path / "a", user={"token": "t1"})))
    assert found.server == "https://10.1.2.3:6443" and found.authorization == "Bearer t1"
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text("t2\n")
    path = write(tmp_path / "b", user={"tokenFile": "secrets/token"})  # relative to the kubeconfig
    assert credentials.from_kubeconfig(str(path)).authorization == "Bearer t2"
    path = write(tmp_path / "c", user={"token": "t3", "tokenFile": "missing", "exec": {"command": "x"}})
    assert credentials.from_kubeconfig(str(path)).authorization == "Bearer t3"
    path = write(tmp_path / "d", user={"username": "ada", "password": "pw"})
    basic = "Basic " + base64.b64encode(b"ada:pw").decode()
    assert credentials.from_kubeconfig(str(path)).authorization == basic
    assert credentials.from_kubeconfig(str(path), context="anonymous").authorization is None


def test_plugins_are_left_to_the_kubernetes_package(tmp_path: Path) -> None:
    with pytest.raises(NeedsPlugin):
        credentials.from_kubeconfig(str(write(tmp_path / "a", user={"exec": {"command": "x"}})))
    with pytest.raises(NeedsPlugin):
        credentials.from_kubeconfig(str(write(tmp_path / "b", user={"token": "t", "auth-provider": {}})))


def test_tls_material(tmp_path: Path) -> None:
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    wrapped = base64.encodebytes(pem).decode()  # with line breaks, as some tools write it
    path = write(tmp_path / "a", user={"client-certificate": "c.crt", "client-key-data": wrapped},
                 cluster={"certificate-authority-data": wrapped, "certificate-authority": "ignored",
                          "tls-server-name": "api.internal"})
    found = credentials.from_kubeconfig(str(path))
    assert found.ca_pem == pem and found.ca_file is None and found.key_pem == pem
    assert found.cert_file == str(tmp_path / "c.crt") and found.tls_server_name == "api.internal"
    insecure = write(tmp_path / "b", user={}, cluster={"insecure-skip-tls-verify": True})
    context = connection_from_credentials(credentials.from_kubeconfig(str(insecure))).ssl
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_NONE
    plain = write(tmp_path / "c", user={"client-certificate": "c.crt"}, cluster={"server": "http://h:8080"})
    assert credentials.from_kubeconfig(str(plain)).cert_file is None  # TLS material only for https


@pytest.mark.parametrize(("config", "problem"), [
    ({"clusters": []}, "no current-context"),
    ({"current-context": "x", "contexts": [{"name": "x", "context": {"cluster": "c"}}]},
     "no entry named 'c'"),
    ({"current-context": "x", "contexts": [{"name": "x"}, {"name": "x"}]}, "several entries named 'x'"),
    ({"current-context": "x", "contexts": [{"name": "x", "context": {"cluster": "c"}}],
      "clusters": [{"name": "c", "cluster": {}}]}, "has no server"),
    ({"current-context": "x", "contexts": [{"context": {}}]}, "has no name"),
])
def test_bad_kubeconfigs_are_one_error(tmp_path: Path, config: dict[str, Any], problem: str) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(CredentialsError, match=problem):
        credentials.from_kubeconfig(str(path))


async def test_in_cluster_token_is_read_again_when_refreshed(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("first")
    (tmp_path / "ca.crt").write_text("pem")
    env = {credentials.SERVICE_HOST: "fd00::1", credentials.SERVICE_PORT: "443"}
    found = credentials.in_cluster(env, account=tmp_path)
    assert found.server == "https://[fd00::1]:443" and found.ca_file == str(tmp_path / "ca.crt")
    assert found.authorization == "Bearer first"
    (tmp_path / "token").write_text("rotated\n")
    assert found.refresh is not None and found.refresh() == "Bearer rotated"
    (tmp_path / "ca.crt").write_text("")
    with pytest.raises(CredentialsError, match="CA file is empty"):
        credentials.in_cluster(env, account=tmp_path)
    with pytest.raises(CredentialsError, match="must be set"):
        credentials.in_cluster({}, account=tmp_path)


def test_the_agent_imports_neither_the_syncer_nor_the_kubernetes_package(tmp_path: Path) -> None:
    path = write(tmp_path / "config", user={"token": "t"}, cluster={"server": "http://127.0.0.1:9"})
    script = (
        "import sys\n"
        "from kubepedia.cli import main\n"
        "from agent.kubeclient import load_connection\n"
        "try:\n"
        "    main(['agent', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"load_connection(kubeconfig={str(path)!r})\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


async def test_load_connection_reads_a_token_kubeconfig(tmp_path: Path) -> None:
    path = write(tmp_path / "config", user={"token": "s3cret"}, cluster={"server": "http://127.0.0.1:9"})
    connection = load_connection(kubeconfig=str(path))
    assert connection.server == "http://127.0.0.1:9" and connection.ssl is False
    assert await connection.auth_headers(force=True) == {"Authorization": "Bearer s3cret"}
