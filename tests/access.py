"""Access for tests of the read API: one token, whose caller may read what a test says."""

from __future__ import annotations

from apiserver.access import Access
from apiserver.auth import StaticTokens
from apiserver.grants import User
from apiserver.scope import EVERYTHING_SCOPE, Scope

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
