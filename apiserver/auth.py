"""Who a bearer token belongs to: a token file, and optionally a TokenReview by a host cluster.

The token file has kube-apiserver's ``--token-auth-file`` format, one CSV line a token::

    token,user,uid,"group1,group2"

(uid and groups optional; ``#`` starts a comment line). Only each token's SHA-256 is kept,
and a presented token's digest is compared with every entry by ``hmac.compare_digest``.
The file is read again when it changes (``apiserver.reloading``).

TokenReview (https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/
token-review-v1/): the token is POSTed to the host cluster's
``/apis/authentication.k8s.io/v1/tokenreviews``; its ``status.authenticated`` and
``status.user`` decide. Answers are cached briefly (by the token's digest, bounded), so
that a kubectl session's requests cost one review, and a revoked token stops working
within the cache's lifetime.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import aiohttp
import orjson

from apiserver.grants import User
from apiserver.reloading import ReloadingFile

log = logging.getLogger(__name__)

MAX_TOKEN = 8192  # bytes of a bearer token looked at, at most (service account JWTs are ~1 KB)
TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
REVIEW_TTL_S = 10.0
REVIEW_FAILED_TTL_S = 2.0
REVIEW_CACHE = 1024
REVIEW_TIMEOUT_S = 5.0


# Names of kubepedia's own callers (the data dir's read token): never taken from a token file
# or a TokenReview, so that no outside name can claim their grant.
RESERVED_PREFIX = "kubepedia:"


class Unavailable(Exception):
    """An authenticator that could not answer (the host cluster is unreachable)."""


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> User | None:
        """The token's user, None if it is not one of ours; Unavailable if it cannot tell."""


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def parse_token_file(text: str) -> tuple[tuple[bytes, User], ...]:
    """(token digest, user) per line, or a ValueError naming the line."""
    entries: list[tuple[bytes, User]] = []
    for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise ValueError(f"line {n}: expected token,user[,uid[,\"group1,group2\"]]")
        token = row[0].strip()
        if len(token) < 16 or len(token) > MAX_TOKEN:
            raise ValueError(f"line {n}: a token has 16 to {MAX_TOKEN} characters")
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        if any(name.startswith(RESERVED_PREFIX) for name in (row[1].strip(), *groups)):
            raise ValueError(f"line {n}: names starting with {RESERVED_PREFIX!r} are kubepedia's own")
        entries.append((digest(token), User(name=row[1].strip(), groups=groups)))
    return tuple(entries)


class TokenFile:
    """The token file's users, current within a second of a change."""

    def __init__(self, path: Path, *, interval: float = 1.0) -> None:
        self._file = ReloadingFile(path, parse_token_file, what="token file", interval=interval)

    async def authenticate(self, token: str) -> User | None:
        presented = digest(token)
        found = None
        for known, user in self._file.current():
            # Every entry is compared, so the time taken says nothing of which one matched.
            if hmac.compare_digest(presented, known):
                found = user
        return found


class StaticTokens:
    """Users by token given in code (tests, the demo)."""

    def __init__(self, tokens: dict[str, User]) -> None:
        self._entries = tuple((digest(t), u) for t, u in tokens.items())

    async def authenticate(self, token: str) -> User | None:
        presented = digest(token)
        found = None
        for known, user in self._entries:
            if hmac.compare_digest(presented, known):
                found = user
        return found


HeadersSource = Callable[[], Awaitable[dict[str, str]]]


class TokenReviewer:
    """Tokens reviewed by a host cluster (``authentication.k8s.io/v1`` TokenReview)."""

    def __init__(self, *, server: str, auth_headers: HeadersSource, ssl: Any = None,
                 audiences: tuple[str, ...] = (), ttl_s: float = REVIEW_TTL_S,
                 cache_size: int = REVIEW_CACHE) -> None:
        """``ssl`` is aiohttp's (an ``SSLContext``, or False for plain http)."""
        self._url = server.rstrip("/") + TOKEN_REVIEW_PATH
        self._headers = auth_headers
        self._ssl = ssl
        self._audiences = audiences
        self._ttl = ttl_s
        self._size = cache_size
        self._cache: OrderedDict[bytes, tuple[float, User | None]] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _cached(self, key: bytes) -> tuple[Literal[True], User | None] | None:
        hit = self._cache.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        self._cache.move_to_end(key)
        return True, hit[1]

    def _remember(self, key: bytes, user: User | None, ttl: float) -> None:
        self._cache[key] = (time.monotonic() + ttl, user)
        self._cache.move_to_end(key)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)

    async def authenticate(self, token: str) -> User | None:
        key = digest(token)
        hit = self._cached(key)
        if hit is not None:
            return hit[1]
        user = await self._review(token)
        self._remember(key, user, self._ttl if user is not None else REVIEW_FAILED_TTL_S)
        return user

    async def _review(self, token: str) -> User | None:
        spec: dict[str, Any] = {"token": token}
        if self._audiences:
            spec["audiences"] = list(self._audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REVIEW_TIMEOUT_S))
        headers = {"Content-Type": "application/json", **(await self._headers())}
        try:
            async with self._session.post(self._url, data=orjson.dumps(body), headers=headers,
                                          ssl=self._ssl) as resp:
                raw = await resp.read()
                if resp.status != 201 and resp.status != 200:
                    raise Unavailable(f"TokenReview answered {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"TokenReview failed: {exc}") from exc
        return reviewed_user(orjson.loads(raw))


def reviewed_user(review: Any) -> User | None:
    """The user a TokenReview's status names, if it authenticated the token."""
    status = review.get("status") if isinstance(review, dict) else None
    if not isinstance(status, dict) or status.get("authenticated") is not True:
        if isinstance(status, dict) and status.get("error"):
            log.info("token review refused a token", extra={"error": str(status["error"])[:200]})
        return None
    user = status.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("username"), str) or not user["username"]:
        return None
    if user["username"].startswith(RESERVED_PREFIX):
        return None
    groups = user.get("groups") or []
    named = [g for g in groups if isinstance(g, str) and not g.startswith(RESERVED_PREFIX)] \
        if isinstance(groups, list) else []
    return User(name=user["username"], groups=tuple(named))
