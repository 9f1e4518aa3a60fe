"""``kubepedia serve --role``: the read API and the syncer as separate processes (deploy/ runs
each as its own Deployment), and the read API over HTTPS for a host cluster's aggregator."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.procs import Proc, wait_http


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubepedia-api")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _serve(db_url: str, data_dir: Path, log: Path, *extra: str) -> Proc:
    return Proc(["-m", "kubepedia", "serve", "--data-dir", str(data_dir), "--api-listen", "127.0.0.1:0",
                 "--ingest-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", *extra],
                log=log, env={"KUBEPEDIA_DATABASE_URL": db_url})


async def test_api_role_serves_only_the_api_over_https_without_files(db_url: str, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    data_dir = tmp_path / "data"
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("reader-token-0123456789,reader\n")
    proc = _serve(db_url, data_dir, tmp_path / "api.log", "--role", "api",
                  "--tls-cert", str(cert), "--tls-key", str(key), "--token-file", str(tokens))
    await proc.start()
    try:
        port = (await proc.ports("api"))["api"]
        trusted = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as session:
            await _wait_https(session, f"https://127.0.0.1:{port}/readyz", trusted)
            own = f"https://127.0.0.1:{port}/apis/clusterpedia.io/v1beta1"
            async with session.get(own, ssl=trusted) as resp:
                assert resp.status == 401, "the token file's callers only"
            reader = {"Authorization": "Bearer reader-token-0123456789"}
            async with session.get(own, ssl=trusted, headers=reader) as resp:
                assert resp.status == 200
                assert (await resp.json())["kind"] == "APIResourceList"
        # The API listener is the last one a process starts: none other came before it.
        assert set(proc.listening()) == {"api"}
        assert not data_dir.exists(), "an API-only process opens no key file and writes no token"
    finally:
        assert await proc.stop(within=60) == 0, proc.run_output()[-3000:]


async def test_api_role_without_a_certificate_refuses_to_start(db_url: str, tmp_path: Path) -> None:
    """An API-only process makes no certificate in a data dir it does not own: it serves
    --tls-cert's, or plain HTTP when told so."""
    data_dir = tmp_path / "data"
    proc = _serve(db_url, data_dir, tmp_path / "api.log", "--role", "api")
    await proc.start()
    assert proc.proc is not None
    assert await asyncio.wait_for(proc.proc.wait(), 120) == 1
    assert "--role api serves the read API over TLS: give --tls-cert and --tls-key" in proc.run_output()
    assert not data_dir.exists()

    plain = _serve(db_url, data_dir, tmp_path / "plain.log", "--role", "api", "--api-plain-http",
                   "--anonymous-read")
    await plain.start()
    try:
        port = (await plain.ports("api"))["api"]
        await wait_http(f"http://127.0.0.1:{port}/readyz")
        assert not data_dir.exists()
    finally:
        assert await plain.stop(within=60) == 0, plain.run_output()[-3000:]


async def _wait_https(session: aiohttp.ClientSession, url: str, context: ssl.SSLContext) -> None:
    async with asyncio.timeout(60):
        while True:
            try:
                async with session.get(url, ssl=context) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


async def test_syncer_role_serves_ingest_and_admin_but_no_api(db_url: str, tmp_path: Path) -> None:
    proc = _serve(db_url, tmp_path / "data", tmp_path / "syncer.log", "--role", "syncer")
    await proc.start()
    try:
        ports = await proc.ports("ingest", "admin")
        for listener in ("ingest", "admin"):
            await wait_http(f"http://127.0.0.1:{ports[listener]}/readyz")
        # The admin listener is the syncer's last: had the API been started, it would be listed.
        assert set(proc.listening()) == {"ingest", "admin"}
        assert (tmp_path / "data" / "admin.token").exists()
    finally:
        assert await proc.stop(within=60) == 0, proc.run_output()[-3000:]
