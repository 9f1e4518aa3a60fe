"""TLS on ``kubepedia serve``'s listeners (``--tls-cert``, ``--tls-key``, ``--client-ca``).

One certificate serves every listener: the read API, the ingest listener (agents' tokens) and
the admin listener (the admin token), so that no bearer token crosses a network in clear.

Without ``--tls-cert`` the read API is still served over TLS (unless ``--api-plain-http``),
with a self-signed certificate made in the data dir on first start: kubectl sends a bearer
token only to an https server (client-go reads a kubeconfig's credentials only for TLS
transports). That certificate names ``localhost``, ``127.0.0.1``, ``::1`` and the host the
API listens on; it is its own authority, and ``kubepedia kubeconfig`` puts it in the
kubeconfig as ``certificate-authority-data``.

With ``--client-ca``, client certificates are verified against that CA. On the read API a
certificate is required (``CERT_REQUIRED``): the CA decides who may connect at all, and the
caller's bearer token still decides what it reads (a certificate names no subject here).
The ingest and admin listeners authenticate with tokens, as Kubernetes' apiserver accepts
either a client certificate or a token: a certificate is asked for and, when one is
presented, must be signed by the CA (``CERT_OPTIONAL``); a client without one still needs
its token.

Every file is checked before anything starts, each problem told in one line (``TlsError``).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.tls import CERTIFICATE, TlsError, load_ca, load_chain
from syncer import secretfile

__all__ = ["CERT_FILE", "KEY_FILE", "ServerContexts", "TlsError", "TlsFiles", "certificate_pem",
           "ensure_certificate", "self_signed", "server_contexts", "tls_files"]

KEY_FILE = "api-tls.pem"  # the data dir's self-signed certificate, then its key: private
CERT_FILE = "api-tls.crt"  # the certificate alone, for clients: public
VALID_DAYS = 3650


@dataclass(frozen=True, kw_only=True, slots=True)
class TlsFiles:
    cert: Path  # PEM: the server's certificate, then any intermediates
    key: Path  # PEM: its private key, unencrypted
    client_ca: Path | None = None  # PEM: the CA that signs client certificates


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerContexts:
    api: ssl.SSLContext  # the read API: a client certificate is required with a client CA
    tokens: ssl.SSLContext  # ingest and admin: tokens authenticate; a certificate is optional


def server_contexts(files: TlsFiles) -> ServerContexts:
    return ServerContexts(api=_context(files, ssl.CERT_REQUIRED),
                          tokens=_context(files, ssl.CERT_OPTIONAL))


def tls_files(*, cert: Path | None, key: Path | None, client_ca: Path | None) -> TlsFiles | None:
    """The files given on the command line, or None for plain HTTP; refuses half a setting."""
    if cert is None and key is None:
        if client_ca is not None:
            raise TlsError("--client-ca needs --tls-cert and --tls-key (client certificates are "
                           "verified only over TLS)")
        return None
    if cert is None or key is None:
        raise TlsError("--tls-cert and --tls-key go together")
    return TlsFiles(cert=cert, key=key, client_ca=client_ca)


def _context(files: TlsFiles, verify: ssl.VerifyMode) -> ssl.SSLContext:
    # Not create_default_context(CLIENT_AUTH): it would trust the system's roots to sign
    # client certificates, letting in anyone with a publicly issued one.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_chain(context, cert=files.cert, key=files.key, cert_flag="--tls-cert", key_flag="--tls-key")
    if files.client_ca is not None:
        load_ca(context, files.client_ca, flag="--client-ca")
        context.verify_mode = verify
    return context


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


def self_signed(host: str) -> tuple[bytes, bytes]:
    """A new certificate and its key (PEM) for the read API on ``host``."""
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
    return cert.public_bytes(serialization.Encoding.PEM), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def ensure_certificate(data_dir: Path, host: str) -> TlsFiles:
    """The data dir's certificate and key (one private file, made on first start as the admin
    token is: two servers starting together end up with the same one), and beside it the
    certificate alone, public, for clients to trust."""
    path = data_dir / KEY_FILE
    if secretfile.read_bytes(path, "read API certificate and key") is None:
        cert_pem, key_pem = self_signed(host)
        secretfile.create(path, cert_pem + key_pem)
    public = data_dir / CERT_FILE
    cert = certificate_pem(path)
    if not public.exists() or public.read_bytes() != cert:
        tmp = public.with_name(f".{CERT_FILE}.{os.getpid()}")
        tmp.write_bytes(cert)
        tmp.replace(public)
    return TlsFiles(cert=path, key=path)


def certificate_pem(path: Path) -> bytes:
    """The first certificate of a PEM file, to be trusted as the read API's authority."""
    text = path.read_bytes()
    start = text.find(CERTIFICATE)
    end_marker = b"-----END CERTIFICATE-----"
    end = text.find(end_marker, start)
    if start < 0 or end < 0:
        raise ValueError(f"{path}: no certificate")
    return text[start:end + len(end_marker)] + b"\n"
