"""``kubepedia kubeconfig``: a kubeconfig for kubectl, with a context for all clusters and
one per cluster (``/clusters/{name}`` on the same server).

The user entry carries the caller's token (``--token``, ``$KUBEPEDIA_TOKEN``, else the data
dir's read token), so kubectl reads what that token's grants allow; the clusters listed are
those the token may read. For a read API served over TLS, the CA (``--ca``, else the data
dir's certificate) goes in the kubeconfig (``certificate-authority-data``), and
``--client-cert``/``--client-key`` the client certificate a server with ``--client-ca``
requires; the command itself reaches the server with them, so a kubeconfig it prints has
worked once."""

from __future__ import annotations

import argparse
import base64
from typing import Any

import yaml

from agent.tls import TlsError, read_pem
from kubepedia.config import DEFAULT_API_SERVER
from kubepedia.http import (
    CommandError,
    Server,
    add_read_api_arguments,
    get_json,
    read_api,
    read_api_ca,
    run_command,
)

CONTEXT = "kubepedia"
ANONYMOUS = "anonymous"  # the user name of an https kubeconfig without a client certificate


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("kubeconfig", help="print a kubeconfig for kubectl: all clusters, and one each")
    # Written into the kubeconfig: the token, the CA, the client certificate and key.
    add_read_api_arguments(parser, default_server=DEFAULT_API_SERVER,
                           server_help="the read API's URL as kubectl will reach it")


def document(server: str, clusters: list[str], *, ca: bytes | None = None, token: str | None = None,
             user: dict[str, str] | None = None) -> dict[str, Any]:
    """A context for all clusters and one per cluster; the user carries ``token`` and the
    client certificate in ``user``, and an https server is trusted by ``ca`` (PEM)."""
    server = server.rstrip("/")
    entries = [(CONTEXT, server)] + [(f"{CONTEXT}-{name}", f"{server}/clusters/{name}") for name in clusters]
    cluster: dict[str, str] = {"certificate-authority-data": _b64(ca)} if ca is not None else {}
    user = {**(user or {}), **({"token": token} if token else {})} or None
    if user is None and server.startswith("https://"):
        # kubectl asks for a user name and password for an https server whose user entry
        # names no credential; with this one it sends none (an anonymous read).
        user = {"username": ANONYMOUS}
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": url, **cluster}} for name, url in entries],
        "users": [{"name": CONTEXT, "user": user or {}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": CONTEXT}} for name, _ in entries],
        "current-context": CONTEXT,
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def cluster_names(server: Server) -> list[str]:
    """The clusters the caller may read (``/clusters`` lists only those)."""
    body = await get_json(server, "/clusters")
    return [str(item["name"]) for item in body.get("items", [])]


async def _run(args: argparse.Namespace) -> str:
    server = read_api(args)
    try:
        ca_file = read_api_ca(args)
        ca = read_pem(ca_file, flag="--ca") if ca_file is not None else None
        user = ({"client-certificate-data": _b64(read_pem(args.client_cert, flag="--client-cert")),
                 "client-key-data": _b64(read_pem(args.client_key, flag="--client-key"))}
                if args.client_cert is not None and args.client_key is not None else None)
    except TlsError as exc:
        raise CommandError(str(exc)) from exc
    names = await cluster_names(server)
    token = server.headers.get("Authorization", "").removeprefix("Bearer ") or None
    doc = document(args.server, names, ca=ca, token=token, user=user)
    return yaml.safe_dump(doc, sort_keys=False).rstrip("\n")


def run(args: argparse.Namespace) -> int:
    return run_command(_run(args))
