"""kubesim answers TokenReview as kube-apiserver does, from its token table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml

from kubesim.server import SimServer
from kubesim.tokenreview import DEFAULT_AUDIENCE, PATH, TokenTable
from tests.kubesim.conftest import Kubectl, call

ALICE = {"token": "alice-token", "username": "alice", "uid": "u-1", "groups": ["payments"]}


def _review(token: str, audiences: list[str] | None = None) -> dict[str, object]:
    spec: dict[str, object] = {"token": token}
    if audiences is not None:
        spec["audiences"] = audiences
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}


async def test_a_known_token_is_reviewed_with_its_user_and_audience(
        sim: SimServer, http: aiohttp.ClientSession) -> None:
    status, added = await call(http, "POST", sim.url + "/_kubesim/tokens", ALICE)
    assert (status, added) == (200, {"tokens": 1})
    status, body = await call(http, "POST", sim.url + PATH, _review("alice-token"))
    assert status == 201
    assert body["kind"] == "TokenReview" and body["apiVersion"] == "authentication.k8s.io/v1"
    assert body["spec"] == {"token": "alice-token"}
    assert body["status"] == {
        "authenticated": True, "audiences": [DEFAULT_AUDIENCE],
        "user": {"username": "alice", "uid": "u-1", "groups": ["payments", "system:authenticated"]}}


async def test_an_unknown_token_or_another_audience_is_not_authenticated(
        sim: SimServer, http: aiohttp.ClientSession) -> None:
    await call(http, "POST", sim.url + "/_kubesim/tokens", ALICE)
    status, body = await call(http, "POST", sim.url + PATH, _review("nobody-token"))
    assert (status, body["status"]) == (201, {"user": {}})
    status, body = await call(http, "POST", sim.url + PATH, _review("alice-token", ["other"]))
    assert status == 201 and "authenticated" not in body["status"]
    assert "invalid for the target audiences ['other']" in body["status"]["error"]
    either = _review("alice-token", ["other", DEFAULT_AUDIENCE])
    status, body = await call(http, "POST", sim.url + PATH, either)
    assert body["status"]["authenticated"] is True and body["status"]["audiences"] == [DEFAULT_AUDIENCE]
    status, cleared = await call(http, "DELETE", sim.url + "/_kubesim/tokens")
    assert (status, cleared) == (200, {"tokens": 0})
    status, body = await call(http, "POST", sim.url + PATH, _review("alice-token"))
    assert body["status"] == {"user": {}}


@pytest.mark.parametrize(("body", "message"), [
    ({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {}},
     "token is required for TokenReview in authentication"),
    ({"apiVersion": "v1", "kind": "Pod", "spec": {"token": "t"}}, "the body must be a TokenReview"),
    ({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
      "spec": {"token": "t", "audiences": "a"}},
     "spec.audiences must be a list of strings"),
])
async def test_a_bad_review_is_a_400(sim: SimServer, http: aiohttp.ClientSession, body: object,
                                     message: str) -> None:
    status, answer = await call(http, "POST", sim.url + PATH, body)
    assert status == 400 and answer["kind"] == "Status" and message in answer["message"]


async def test_tokenreviews_are_created_only_and_never_stored(sim: SimServer,
                                                               http: aiohttp.ClientSession) -> None:
    status, answer = await call(http, "GET", sim.url + PATH)
    assert status == 405 and answer["reason"] == "MethodNotAllowed"
    await call(http, "POST", sim.url + PATH, _review("t"))
    assert not [o for o in sim.sim.dump() if o["resource"] == "tokenreviews"]
    status, resources = await call(http, "GET", sim.url + "/apis/authentication.k8s.io/v1")
    assert status == 200
    assert resources["resources"] == [{"name": "tokenreviews", "singularName": "tokenreview",
                                       "namespaced": False, "kind": "TokenReview", "verbs": ["create"]}]


async def test_kubectl_creates_a_review(sim: SimServer, kubectl: Kubectl, tmp_path: Path) -> None:
    sim.tokens.load_file(_token_file(tmp_path))
    review = tmp_path / "review.yaml"
    review.write_text(yaml.safe_dump(_review("bob-token-0123456789")))
    out = await kubectl.run("create", "-f", str(review), "-o", "json", "--validate=false")
    assert orjson.loads(out)["status"]["user"] == {
        "username": "bob", "uid": "u-2", "groups": ["dev", "ops", "system:authenticated"]}


def _token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.csv"
    path.write_text('# kube-apiserver --token-auth-file format\nbob-token-0123456789,bob,u-2,"dev,ops"\n')
    return path


def test_the_token_file_format_is_kube_apiservers(tmp_path: Path) -> None:
    table = TokenTable()
    table.load_file(_token_file(tmp_path))
    user = table.get("bob-token-0123456789")
    assert user is not None and (user.username, user.uid, user.groups) == ("bob", "u-2", ("dev", "ops"))
    (tmp_path / "bad.csv").write_text("lonely-token\n")
    with pytest.raises(ValueError, match="line 1: expected token,user"):
        table.load_file(tmp_path / "bad.csv")


def test_kubesim_serve_refuses_a_bad_token_file(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("lonely-token\n")
    done = subprocess.run([sys.executable, "-m", "kubesim", "serve", "--tokens", str(tmp_path / "bad.csv")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "line 1: expected token,user" in done.stderr
