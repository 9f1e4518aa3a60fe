"""The read API's TLS: a self-signed certificate made in the data dir on first start.

kubectl sends a bearer token only to an https server (client-go reads a kubeconfig's
credentials only for TLS transports), so the read API is served over TLS by default. The
certificate names ``localhost``, ``127.0.0.1``, ``::1`` and the host it listens on; it is
its own authority, and ``kubepedia kubeconfig`` puts it in the kubeconfig as
``certificate-authority-data``. ``--api-tls-cert``/``--api-tls-key`` serve your own.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from syncer import secretfile

TLS_FILE = "api-tls.pem"  # the certificate, then its key; readable by its owner only
VALID_DAYS = 3650


def _names(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host and host != "localhost":
            names.append(x509.DNSName(host))
        return names
    if not address.is_unspecified and str(address) not in ("127.0.0.1", "::1"):
        names.append(x509.IPAddress(address))
    return names


def self_signed(host: str) -> bytes:
    """A new certificate and key (PEM) for the read API on ``host``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubepedia read API")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(_names(host)), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def ensure_certificate(data_dir: Path, host: str) -> Path:
    """The data dir's certificate file, made on first start (as the admin token is)."""
    path = data_dir / TLS_FILE
    if secretfile.read_bytes(path, "read API certificate") is None:
        secretfile.create(path, self_signed(host))
    return path


def certificate_pem(path: Path) -> bytes:
    """The certificate part of a PEM file (never its key)."""
    text = path.read_bytes()
    start = text.find(b"-----BEGIN CERTIFICATE-----")
    end_marker = b"-----END CERTIFICATE-----"
    end = text.find(end_marker, start)
    if start < 0 or end < 0:
        raise ValueError(f"{path}: no certificate")
    return text[start:end + len(end_marker)] + b"\n"


def server_context(cert: Path, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key) if key is not None else None)
    return context


def client_context(ca: bytes) -> ssl.SSLContext:
    """A client context trusting ``ca`` (PEM) only."""
    return ssl.create_default_context(cadata=ca.decode())
