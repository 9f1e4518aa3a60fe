"""Continue tokens: opaque, tamper-evident keyset cursors.

A token carries the list's resourceVersion (the change-log sequence of its first page),
the sort key of the last row served, and a fingerprint of the query it belongs to, signed
with HMAC-SHA256 under a key every API process of one database shares. A client cannot
forge a position, widen its query (a token replayed with other selectors or another
path is refused), or read anything from the token it could not read from the page.

Pages are keyset pages (``WHERE (k1, k2, ...) > (...)``), never OFFSET: each one costs
the same however deep the walk, and an object that exists throughout a walk is neither
skipped nor repeated while others change (a row's sort key never changes, since it is
the object's identity).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

MAX_TOKEN_LENGTH = 4096
_SIGNATURE_BYTES = 16


class BadContinue(ValueError):
    """A continue token that is malformed, forged, or belongs to another query (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    resource_version: int
    after: tuple[str, ...]  # the sort key of the last row served


def fingerprint(parts: Sequence[Any]) -> str:
    """A short digest of what defines a query (path, selectors, order): a token is only
    valid for the query it came from."""
    return hashlib.sha256(orjson.dumps(list(parts))).hexdigest()[:24]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(cursor: Cursor, *, query: str, key: bytes) -> str:
    payload = orjson.dumps({"rv": cursor.resource_version, "k": list(cursor.after), "q": query})
    signature = hmac.new(key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    return f"{_b64(payload)}.{_b64(signature)}"


def decode(token: str, *, query: str, key: bytes) -> Cursor:
    """The cursor in ``token``; BadContinue when it was not issued for ``query`` by us."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise BadContinue("continue key is too long")
    body, dot, sig = token.partition(".")
    try:
        payload, signature = _unb64(body), _unb64(sig)
    except ValueError as exc:
        raise BadContinue("continue key is not valid") from exc
    expected = hmac.new(key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    if not dot or not hmac.compare_digest(signature, expected):
        raise BadContinue("continue key is not valid")
    data = orjson.loads(payload)
    if data.get("q") != query:
        raise BadContinue("continue key does not belong to this query: use it with the same path and"
                          " parameters it came from")
    return Cursor(resource_version=int(data["rv"]), after=tuple(str(k) for k in data["k"]))
