"""TLS on ``kubepedia serve``'s listeners (``--tls-cert``, ``--tls-key``, ``--client-ca``).

One certificate serves every listener: the read API, the ingest listener (agents' tokens) and
the admin listener (the admin token), so that no bearer token crosses a network in clear.

With ``--client-ca``, client certificates are verified against that CA. The read API has no
authentication of its own, so there a certificate is required (``CERT_REQUIRED``): the CA
decides who reads. The ingest and admin listeners authenticate with tokens, as Kubernetes'
apiserver accepts either a client certificate or a token: a certificate is asked for and,
when one is presented, must be signed by the CA (``CERT_OPTIONAL``); a client without one
still needs its token.

Every file is checked before anything starts, each problem told in one line (``TlsError``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from agent.tls import TlsError, load_ca, load_chain

__all__ = ["ServerContexts", "TlsError", "TlsFiles", "server_contexts"]


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
