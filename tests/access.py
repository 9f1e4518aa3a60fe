"""Access for tests of the read API: one token, whose caller may read what a test says."""

from __future__ import annotations

import ssl
from pathlib import Path

from apiserver.access import Access
from apiserver.auth import StaticTokens
from apiserver.grants import User
from apiserver.scope import EVERYTHING_SCOPE, Scope
from kubepedia.tls import CERT_FILE, TlsFiles, self_signed, server_contexts

TEST_TOKEN = "kubepedia-test-token-0123456789"
TEST_USER = User(name="tester", groups=("testers",))
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


class FixedScope:
    """Every authenticated caller gets ``scope``."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def scope_for(self, user: User) -> Scope:
        return self.scope


def granted(scope: Scope = EVERYTHING_SCOPE) -> Access:
    """Access for ``TEST_TOKEN`` (header ``AUTH``), reading ``scope`` (default: everything,
    Secrets included)."""
    return Access(authenticators=(StaticTokens({TEST_TOKEN: TEST_USER}),), grants=FixedScope(scope))


def tls_files(directory: Path) -> tuple[Path, ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 in ``directory``: its file, a server context, and
    a client context trusting it (kubectl sends a token to https servers only)."""
    cert, key = directory / CERT_FILE, directory / "api-tls.key"
    if not cert.exists():
        cert_pem, key_pem = self_signed("127.0.0.1")
        key.write_bytes(key_pem)
        cert.write_bytes(cert_pem)
    server = server_contexts(TlsFiles(cert=cert, key=key)).api
    return cert, server, ssl.create_default_context(cafile=str(cert))
