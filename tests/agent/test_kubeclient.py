"""Loading kubeconfigs and talking to kubesim with the resulting credentials."""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import yaml
from aiohttp import web

from agent import errors
from agent.discovery import discover
from agent.kubeclient import Connection, KubeClient, load_connection
from tests.agent.conftest import Cluster


def kubeconfig(
    path: Path, *, server: str, user: dict[str, object], cluster: dict[str, object] | None = None
) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sim", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [
            {"name": "ctx", "context": {"cluster": "sim", "user": "u"}},
            {"name": "other", "context": {"cluster": "sim", "user": "u"}},
        ],
        "current-context": "other",
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def test_kubeconfig_with_token(cluster: Cluster, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", server=cluster.url, user={"token": "s3cret"})
    connection = load_connection(kubeconfig=str(path), context="ctx")
    assert connection.server == cluster.url and connection.ssl is False
    assert await connection.auth_headers() == {"Authorization": "Bearer s3cret"}
    async with KubeClient(connection=connection) as client:
        found = await discover(client)
    keys = {rtype.key for rtype in found.types}
    assert {"pods", "configmaps", "deployments.apps"} <= keys
    assert "leases.coordination.k8s.io" not in keys and "events.events.k8s.io" not in keys


def test_bad_kubeconfig_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("clusters: []\n")
    with pytest.raises(errors.KubeClientError, match="cannot load kubeconfig"):
        load_connection(kubeconfig=str(path))


async def test_errors_are_mapped(kube: KubeClient) -> None:
    with pytest.raises(errors.NotFound) as caught:
        await kube.get_json("/api/v1/namespaces/nope/configmaps/nothing")
    assert caught.value.status == 404 and caught.value.reason == "NotFound"
    async with KubeClient(connection=Connection.plain("http://127.0.0.1:9")) as client:
        with pytest.raises(errors.ApiConnectionError) as refused:
            await client.get_json("/api")
    assert refused.value.__cause__ is not None
    assert str(refused.value) == "GET /api: connection refused by 127.0.0.1:9"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        cwd=tmp_path,
    )
    for name, san in (("server", "subjectAltName=IP:127.0.0.1"), ("client", None)):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=tmp_path,
        )
        extra = ["-extfile", "san.ext"] if san else []
        (tmp_path / "san.ext").write_text(san or "")
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            f"{name}.crt",
            *extra,
            cwd=tmp_path,
        )
    return tmp_path


@pytest_asyncio.fixture
async def tls_url(cluster: Cluster, pki: Path) -> AsyncIterator[str]:
    """The same kubesim app, also served over TLS that demands a client certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "server.crt"), str(pki / "server.key"))
    context.verify_mode = ssl.CERT_REQUIRED
    site = web.TCPSite(cluster.server.runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await site.stop()


async def test_kubeconfig_with_client_certificate(tls_url: str, pki: Path) -> None:
    def data(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    path = kubeconfig(
        pki / "config",
        server=tls_url,
        cluster={"certificate-authority-data": data("ca.crt")},
        user={"client-certificate-data": data("client.crt"), "client-key-data": data("client.key")},
    )
    connection = load_connection(kubeconfig=str(path), context="ctx")
    assert isinstance(connection.ssl, ssl.SSLContext)
    async with KubeClient(connection=connection) as client:
        assert "v1" in (await client.get_json("/api"))["versions"]

    # Without the client certificate the TLS handshake is refused.
    path = kubeconfig(
        pki / "config2",
        server=tls_url,
        user={"token": "x"},
        cluster={"certificate-authority": str(pki / "ca.crt")},
    )
    async with KubeClient(connection=load_connection(kubeconfig=str(path))) as client:
        with pytest.raises(errors.ApiConnectionError) as refused:
            await client.get_json("/api")
    assert str(refused.value) == "GET /api: server closed the connection"
