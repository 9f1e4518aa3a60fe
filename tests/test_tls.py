"""TLS on ``kubepedia serve``'s listeners, and its clients: the agent (``--syncer-ca``),
``kubepedia cluster --ca``, ``kubepedia kubeconfig --ca`` and kubectl with what it prints, and
client certificates (``--client-ca``). Certificates are made at test time (tests/tls.py)."""

from __future__ import annotations

import asyncio
import base64
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import yaml

import kubesim
from agent.cli import main as agent_main
from kubepedia.serve import Running, ServeConfig, running
from kubepedia.tls import TlsError, TlsFiles, server_contexts, tls_files
from kubesim.kubeconfig import write_kubeconfig
from tests.convergence import wait_converged
from tests.e2e.procs import Proc
from tests.tls import Authority, Issued, authority, encrypted_key

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
DEADLINE_S = 60.0


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return authority(tmp_path / "pki", "test")


@pytest.fixture
def other_ca(tmp_path: Path) -> Authority:
    return authority(tmp_path / "pki", "other")


@pytest.fixture
def server_cert(ca: Authority) -> Issued:
    return ca.issue("server", server=True)


# --- startup errors --------------------------------------------------------------------------


def test_unusable_files_are_one_line_naming_flag_and_file(ca: Authority, server_cert: Issued,
                                                          other_ca: Authority, tmp_path: Path) -> None:
    other = other_ca.issue("other-server", server=True)
    cases = {
        "--tls-cert {missing}: no such file": TlsFiles(cert=tmp_path / "missing", key=server_cert.key),
        "--tls-cert {dir}: cannot be read (Is a directory)": TlsFiles(cert=tmp_path, key=server_cert.key),
        "--tls-key {missing}: no such file": TlsFiles(cert=server_cert.cert, key=tmp_path / "missing"),
        "--tls-cert {key}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)":
            TlsFiles(cert=server_cert.key, key=server_cert.key),
        "--tls-key {cert}: no PEM private key in it (-----BEGIN ... PRIVATE KEY-----)":
            TlsFiles(cert=server_cert.cert, key=server_cert.cert),
        "--tls-key {encrypted}: the key is encrypted; give it unencrypted, readable only by the user "
        "running kubepedia": TlsFiles(cert=server_cert.cert, key=encrypted_key(tmp_path / "encrypted")),
        f"the key in --tls-key {other.key} is not the key of the certificate in --tls-cert {{cert}}":
            TlsFiles(cert=server_cert.cert, key=other.key),
        "--client-ca {missing}: no such file":
            TlsFiles(cert=server_cert.cert, key=server_cert.key, client_ca=tmp_path / "missing"),
        "--client-ca {key}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)":
            TlsFiles(cert=server_cert.cert, key=server_cert.key, client_ca=server_cert.key),
    }
    names = {"missing": tmp_path / "missing", "dir": tmp_path, "key": server_cert.key,
             "cert": server_cert.cert, "encrypted": tmp_path / "encrypted"}
    for message, files in cases.items():
        with pytest.raises(TlsError) as refused:
            server_contexts(files)
        assert str(refused.value) == message.format(**names)


def test_half_a_tls_setting_is_refused(server_cert: Issued, ca: Authority) -> None:
    with pytest.raises(TlsError, match=r"^--tls-cert and --tls-key go together$"):
        tls_files(cert=server_cert.cert, key=None, client_ca=None)
    with pytest.raises(TlsError, match=r"^--client-ca needs --tls-cert and --tls-key"):
        tls_files(cert=None, key=None, client_ca=ca.cert)
    assert tls_files(cert=None, key=None, client_ca=None) is None


def test_serve_stops_at_a_missing_certificate_in_one_line(server_cert: Issued, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kubepedia", "serve", "--data-dir", str(tmp_path / "data"),
         "--database-url", "postgresql://u:p@127.0.0.1:9/x", "--tls-cert", str(tmp_path / "nope.pem"),
         "--tls-key", str(server_cert.key)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr == f"kubepedia: --tls-cert {tmp_path / 'nope.pem'}: no such file\n"
    assert not (tmp_path / "data").exists(), "stopped before anything was made"


def test_the_agent_refuses_a_ca_for_plain_http(ca: Authority, capsys: pytest.CaptureFixture[str]) -> None:
    code = agent_main(["--cluster", "c", "--syncer", "http://127.0.0.1:9", "--token", "t",
                       "--syncer-ca", str(ca.cert)])
    assert code == 2
    assert capsys.readouterr().err.strip().endswith(
        "--syncer-ca: only for an https URL, not http://127.0.0.1:9")


# --- served over TLS -------------------------------------------------------------------------


@asynccontextmanager
async def serving(db_url: str, tmp_path: Path, files: TlsFiles) -> AsyncIterator[Running]:
    config = ServeConfig(database_url=db_url, data_dir=tmp_path / "data", api_listen=("127.0.0.1", 0),
                         ingest_listen=("127.0.0.1", 0), admin_listen=("127.0.0.1", 0), tls=files)
    async with running(config) as server:
        yield server


def client(ca: Authority, issued: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.cert))
    if issued is not None:
        context.load_cert_chain(str(issued.cert), str(issued.key))
    return context


async def get(url: str, verify: ssl.SSLContext | bool, **headers: str) -> int:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=verify)) as session, \
            session.get(url, headers=headers) as resp:
        await resp.read()
        return resp.status


def read_token(tmp_path: Path) -> str:
    """The read token the server made in its data dir (it reads everything)."""
    return (tmp_path / "data" / "read.token").read_text().strip()


async def kubepedia(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "kubepedia", *args],
                                   capture_output=True, text=True, timeout=120, check=False)


async def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, ["kubectl", "--kubeconfig", str(kubeconfig), *args],
                                   capture_output=True, text=True, timeout=120, check=False)


async def test_every_listener_serves_https_and_no_http(db_url: str, tmp_path: Path, ca: Authority,
                                                       server_cert: Issued) -> None:
    async with serving(db_url, tmp_path, TlsFiles(cert=server_cert.cert, key=server_cert.key)) as server:
        for url in (server.api, server.ingest, server.admin):
            assert url.startswith("https://127.0.0.1:")
            assert await get(url + "/healthz", client(ca)) == 200
            with pytest.raises(aiohttp.ClientError):
                await get(url.replace("https://", "http://") + "/healthz", False)
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await get(url + "/healthz", True)  # the system's roots do not know the test CA


@needs_kubectl
async def test_an_agent_syncs_over_tls_and_kubectl_reads_over_https(
        db_url: str, pool: asyncpg.Pool, tmp_path: Path, ca: Authority, server_cert: Issued) -> None:
    files = TlsFiles(cert=server_cert.cert, key=server_cert.key)
    async with serving(db_url, tmp_path, files) as server, \
            kubesim.running(generate={"namespaces": 2, "pods": 6}, seed=21) as sim:
        admin = ("cluster", "--server", server.admin, "--data-dir", str(tmp_path / "data"))
        refused = await kubepedia(*admin, "list")
        assert refused.returncode == 1 and "TLS certificate not trusted" in refused.stderr, refused.stderr
        added = await kubepedia(*admin, "--ca", str(ca.cert), "add", "edge", "--push")
        assert added.returncode == 0, added.stderr
        token = added.stdout.strip().splitlines()[-1]
        agent = Proc(["-m", "kubepedia", "agent", "--cluster", "edge", "--syncer", server.ingest,
                      "--syncer-ca", str(ca.cert), "--kubeconfig",
                      str(write_kubeconfig(tmp_path / "sim.yaml", sim.url)), "--discovery-interval", "2"],
                     log=tmp_path / "agent.log", env={"KUBEPEDIA_AGENT_TOKEN": token})
        await agent.start()
        try:
            await wait_converged(pool, "edge", sim.url, within=DEADLINE_S)
        finally:
            await agent.stop()
        printed = await kubepedia("kubeconfig", "--server", server.api, "--ca", str(ca.cert),
                                  "--token", read_token(tmp_path))
        assert printed.returncode == 0, printed.stderr
        doc = yaml.safe_load(printed.stdout)
        assert {c["cluster"]["certificate-authority-data"] for c in doc["clusters"]} == {
            base64.b64encode(ca.cert.read_bytes()).decode()}
        kubeconfig = tmp_path / "kubepedia.yaml"
        kubeconfig.write_text(printed.stdout)
        listed = await kubectl(kubeconfig, "get", "pods", "-A", "-o", "name")
        assert listed.returncode == 0, listed.stderr
        pods = [o for o in sim.sim.dump() if o["resource"] == "pods"]
        assert sorted(listed.stdout.split()) == sorted(f"pod/{p['name']}" for p in pods)


async def test_the_agent_refuses_a_syncer_its_ca_did_not_sign(
        db_url: str, pool: asyncpg.Pool, tmp_path: Path, other_ca: Authority, server_cert: Issued) -> None:
    files = TlsFiles(cert=server_cert.cert, key=server_cert.key)
    async with serving(db_url, tmp_path, files) as server, \
            kubesim.running(generate={"namespaces": 1, "pods": 2}, seed=22) as sim:
        await pool.execute("INSERT INTO clusters (name, mode, token_hash) VALUES ('edge', 'push', 'x')")
        agent = Proc(["-m", "kubepedia", "agent", "--cluster", "edge", "--syncer", server.ingest,
                      "--syncer-ca", str(other_ca.cert), "--kubeconfig",
                      str(write_kubeconfig(tmp_path / "sim.yaml", sim.url))],
                     log=tmp_path / "agent.log", env={"KUBEPEDIA_AGENT_TOKEN": "t"})
        await agent.start()
        try:
            line = await agent.reported(lambda: next((line for line in agent.output().splitlines()
                                                      if "TLS certificate not trusted" in line), None),
                                        what="its refusal of the syncer", within=DEADLINE_S)
        finally:
            await agent.stop()
        assert "unable to get local issuer certificate" in line and "--syncer-ca" in line, line
        assert await pool.fetchval("SELECT last_seen_at FROM clusters") is None, "no request got through"
        assert await pool.fetchval("SELECT count(*) FROM sync_state") == 0


@needs_kubectl
async def test_a_client_ca_is_required_by_the_read_api_and_optional_beside_tokens(
        db_url: str, tmp_path: Path, ca: Authority, other_ca: Authority, server_cert: Issued) -> None:
    clients = authority(tmp_path / "pki", "clients")
    reader, stranger = clients.issue("reader", server=False), other_ca.issue("stranger", server=False)
    files = TlsFiles(cert=server_cert.cert, key=server_cert.key, client_ca=clients.cert)
    async with serving(db_url, tmp_path, files) as server:
        assert await get(server.api + "/healthz", client(ca, reader)) == 200
        for nobody in (client(ca), client(ca, stranger)):
            with pytest.raises(aiohttp.ClientError):
                await get(server.api + "/version", nobody)
        for listener in (server.ingest, server.admin):  # tokens there; a certificate is optional
            assert await get(listener + "/healthz", client(ca)) == 200
            assert await get(listener + "/healthz", client(ca, reader)) == 200
            with pytest.raises(aiohttp.ClientError):
                await get(listener + "/healthz", client(ca, stranger))
        without = await kubepedia("kubeconfig", "--server", server.api, "--ca", str(ca.cert))
        assert without.returncode == 1 and without.stderr.startswith(
            f"kubepedia: cannot reach the kubepedia read API at {server.api}: "), without.stderr
        # The certificate lets the caller connect; the token says what it reads.
        token = ("--token", read_token(tmp_path))
        printed = await kubepedia("kubeconfig", "--server", server.api, "--ca", str(ca.cert),
                                  "--client-cert", str(reader.cert), "--client-key", str(reader.key), *token)
        assert printed.returncode == 0, printed.stderr
        certificate = ("--ca", str(ca.cert), "--client-cert", str(reader.cert),
                       "--client-key", str(reader.key))
        for command in (("report", "clusters"), ("history", "-n", "default")):
            answered = await kubepedia(*command, "--server", server.api, *certificate, *token)
            assert answered.returncode == 0, answered.stderr
        kubeconfig = tmp_path / "kubepedia.yaml"
        kubeconfig.write_text(printed.stdout)
        listed = await kubectl(kubeconfig, "get", "--raw", "/clusters")
        assert listed.returncode == 0 and "ClusterList" in listed.stdout, (listed.stdout, listed.stderr)
        doc = yaml.safe_load(printed.stdout)
        doc["users"][0]["user"] = {"token": token[1]}  # a token without a certificate
        kubeconfig.write_text(yaml.safe_dump(doc))
        refused = await kubectl(kubeconfig, "get", "--raw", "/clusters")
        assert refused.returncode != 0 and "Unable to connect to the server" in refused.stderr, refused.stderr
