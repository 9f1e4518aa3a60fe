"""TLS from PEM files named on a command line, refused in one line that names the flag and
the file: missing, unreadable, not PEM, encrypted, a key that is not the certificate's.

A client context built here verifies the server's certificate and host name against the CA
it is given, and only that CA; without one, against the system trust store. Verification is
never turned off.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import urlsplit

CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_ENCRYPTED = (b"ENCRYPTED PRIVATE KEY", b"Proc-Type: 4,ENCRYPTED")


class TlsError(ValueError):
    """A TLS file or setting that cannot be used; the message is one line for the user."""


def read_pem(path: Path, *, flag: str) -> bytes:
    """The file's bytes, or a TlsError naming ``flag`` and the file."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise TlsError(f"{flag} {path}: no such file") from exc
    except OSError as exc:
        raise TlsError(f"{flag} {path}: cannot be read ({exc.strerror or exc})") from exc


def check_certificates(path: Path, *, flag: str) -> bytes:
    data = read_pem(path, flag=flag)
    if CERTIFICATE not in data:
        raise TlsError(f"{flag} {path}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)")
    return data


def check_key(path: Path, *, flag: str) -> None:
    data = read_pem(path, flag=flag)
    if any(marker in data for marker in _ENCRYPTED):
        raise TlsError(f"{flag} {path}: the key is encrypted; give it unencrypted, readable only by "
                       "the user running kubepedia")
    if b"PRIVATE KEY-----" not in data:
        raise TlsError(f"{flag} {path}: no PEM private key in it (-----BEGIN ... PRIVATE KEY-----)")


def load_ca(context: ssl.SSLContext, path: Path, *, flag: str) -> None:
    """Trust the CA certificates in ``path`` (PEM) for verifying the other side."""
    check_certificates(path, flag=flag)
    try:
        context.load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        raise TlsError(f"{flag} {path}: not usable as CA certificates ({exc.reason or exc})") from exc


def load_chain(context: ssl.SSLContext, *, cert: Path, key: Path, cert_flag: str, key_flag: str) -> None:
    """This side's certificate chain and key, checked to belong together."""
    check_certificates(cert, flag=cert_flag)
    check_key(key, flag=key_flag)
    try:
        # An empty password: an encrypted key the checks above missed fails here instead of
        # OpenSSL asking for a pass phrase on the terminal.
        context.load_cert_chain(str(cert), str(key), password=b"")
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise TlsError(f"the key in {key_flag} {key} is not the key of the certificate in "
                           f"{cert_flag} {cert}") from exc
        raise TlsError(f"cannot use {cert_flag} {cert} with {key_flag} {key}: "
                       f"{exc.reason or exc}") from exc


def client_context(url: str, *, ca: Path | None, ca_flag: str, cert: Path | None = None,
                   key: Path | None = None, cert_flag: str = "--client-cert",
                   key_flag: str = "--client-key") -> ssl.SSLContext | bool:
    """What aiohttp's ``ssl`` argument takes to reach ``url``: a context trusting ``ca`` (and
    presenting ``cert``/``key`` when given), or True (the system trust store). A CA or a client
    certificate for an http URL is refused rather than silently unused."""
    if (ca or cert or key) and urlsplit(url).scheme != "https":
        flags = " and ".join(f for f, v in ((ca_flag, ca), (cert_flag, cert), (key_flag, key)) if v)
        raise TlsError(f"{flags}: only for an https URL, not {url}")
    if (cert is None) != (key is None):
        raise TlsError(f"{cert_flag} and {key_flag} go together")
    if ca is None and cert is None:
        return True
    if ca is None:
        context = ssl.create_default_context()  # the system's roots
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and host name
        load_ca(context, ca, flag=ca_flag)
    if cert is not None and key is not None:
        load_chain(context, cert=cert, key=key, cert_flag=cert_flag, key_flag=key_flag)
    return context
