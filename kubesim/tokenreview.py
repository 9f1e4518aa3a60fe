"""TokenReview (``POST /apis/authentication.k8s.io/v1/tokenreviews``) against a token table.

As kube-apiserver answers it (https://kubernetes.io/docs/reference/kubernetes-api/
authentication-resources/token-review-v1/): the request is a ``TokenReview`` whose
``spec.token`` is required (a 400 without it) and ``spec.audiences`` optional; the answer,
201 Created, is that object with ``status`` filled in: ``authenticated``, ``user``
(``username``, ``uid``, ``groups``), ``audiences`` and ``error``. Without
``spec.audiences`` a token is reviewed for the server's own audience; a token valid for
none of the requested audiences is not authenticated, and ``error`` says why. An unknown
token is answered as kube-apiserver's union of authenticators answers it: not
authenticated, an empty user, no error. Nothing is stored; tokenreviews serve ``create``
only (another method is a 405).

The table is kubesim's own: ``kubesim serve --tokens FILE`` (kube-apiserver's
``--token-auth-file`` format: ``token,user[,uid[,"group1,group2"]]``),
``POST /_kubesim/tokens`` with ``{"token", "username", "uid"?, "groups"?, "audiences"?}``
adds or replaces one entry, ``DELETE /_kubesim/tokens`` empties it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from kubesim.errors import bad_request, method_not_allowed

JSON = dict[str, Any]
GROUP_VERSION = "authentication.k8s.io/v1"
PATH = f"/apis/{GROUP_VERSION}/tokenreviews"
DEFAULT_AUDIENCE = "https://kubernetes.default.svc.cluster.local"  # kube-apiserver's default
MAX_BODY = 64 << 10  # a review carries one token (service account JWTs are about 1 KB)


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenUser:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,)


class TokenTable:
    """The tokens this cluster knows, and who each is."""

    def __init__(self) -> None:
        self._users: dict[str, TokenUser] = {}

    def add(self, token: str, user: TokenUser) -> None:
        self._users[token] = user

    def update(self, other: TokenTable) -> None:
        self._users.update(other._users)

    def clear(self) -> None:
        self._users.clear()

    def get(self, token: str) -> TokenUser | None:
        return self._users.get(token)

    def __len__(self) -> int:
        return len(self._users)

    def load_file(self, path: Path) -> None:
        """Add every line of a kube-apiserver token file; a bad line is a ValueError."""
        for number, row in enumerate(csv.reader(io.StringIO(path.read_text())), start=1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 2 or not row[0] or not row[1]:
                raise ValueError(f"{path}: line {number}: expected token,user[,uid[,groups]]")
            groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
            self.add(row[0], TokenUser(username=row[1], uid=row[2] if len(row) > 2 else "", groups=groups))


def review(table: TokenTable, body: Any) -> JSON:
    """The reviewed TokenReview (the request with its status), or a 400 for a bad request."""
    if not isinstance(body, dict) or body.get("kind") != "TokenReview" \
            or body.get("apiVersion") != GROUP_VERSION:
        raise bad_request(f"the body must be a TokenReview of {GROUP_VERSION}")
    spec = body.get("spec")
    token = spec.get("token") if isinstance(spec, dict) else None
    if not isinstance(token, str) or not token:
        raise bad_request("token is required for TokenReview in authentication")
    wanted = spec.get("audiences") if isinstance(spec, dict) else None
    if wanted is not None and (not isinstance(wanted, list) or not all(isinstance(a, str) for a in wanted)):
        raise bad_request("spec.audiences must be a list of strings")
    given = body.get("metadata")
    metadata: JSON = given if isinstance(given, dict) else {}
    return {"kind": "TokenReview", "apiVersion": GROUP_VERSION,
            "metadata": {**metadata, "creationTimestamp": None}, "spec": spec,
            "status": _status(table.get(token), wanted or [DEFAULT_AUDIENCE])}


def _status(user: TokenUser | None, wanted: list[str]) -> JSON:
    if user is None:
        return {"user": {}}
    audiences = [a for a in wanted if a in user.audiences]
    if not audiences:
        return {"user": {}, "error": f"token audiences {list(user.audiences)} is invalid for the "
                                     f"target audiences {wanted}"}
    named: JSON = {"username": user.username, "groups": [*user.groups, "system:authenticated"]}
    if user.uid:
        named["uid"] = user.uid
    return {"authenticated": True, "user": named, "audiences": audiences}


def _entry(body: Any) -> tuple[str, TokenUser]:
    if not isinstance(body, dict):
        raise bad_request("expected a JSON object")
    token, username = body.get("token"), body.get("username")
    uid, groups = body.get("uid", ""), body.get("groups", [])
    audiences = body.get("audiences", [DEFAULT_AUDIENCE])
    lists_ok = all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in (groups, audiences))
    if not isinstance(token, str) or not token or not isinstance(username, str) or not username \
            or not isinstance(uid, str) or not lists_ok:
        raise bad_request("expected {token, username, uid?, groups?: [...], audiences?: [...]}")
    return token, TokenUser(username=username, uid=uid, groups=tuple(groups), audiences=tuple(audiences))


async def _body(request: web.Request) -> Any:
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise bad_request("the body is too large for a TokenReview")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("the body is not JSON") from None


def routes(table: TokenTable) -> list[web.RouteDef]:
    """The API path (before the generic resource routes, which it shadows) and the controls."""

    async def create(request: web.Request) -> web.Response:
        if request.method != "POST":
            raise method_not_allowed()
        answer = review(table, await _body(request))
        return web.Response(status=201, body=orjson.dumps(answer), content_type="application/json")

    async def add(request: web.Request) -> web.Response:
        token, user = _entry(await _body(request))
        table.add(token, user)
        return web.json_response({"tokens": len(table)})

    async def clear(request: web.Request) -> web.Response:
        table.clear()
        return web.json_response({"tokens": 0})

    return [web.route("*", PATH, create), web.post("/_kubesim/tokens", add),
            web.delete("/_kubesim/tokens", clear)]
