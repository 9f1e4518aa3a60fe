"""``kubepedia kubeconfig``: a kubeconfig for kubectl, with a context for all clusters and
one per cluster (``/clusters/{name}`` on the same server).

For a read API served over TLS, ``--ca`` puts the CA in the kubeconfig
(``certificate-authority-data``), and ``--client-cert``/``--client-key`` the client
certificate a server with ``--client-ca`` requires; the command itself reaches the server
with them, so a kubeconfig it prints has worked once."""

from __future__ import annotations

import argparse
import base64
from typing import Any

import yaml

from agent.tls import TlsError, read_pem
from kubepedia.config import DEFAULT_API_SERVER
from kubepedia.http import CommandError, Server, add_read_api_tls, get_json, read_api, run_command

CONTEXT = "kubepedia"
ANONYMOUS = "anonymous"  # the user name of an https kubeconfig without a client certificate


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("kubeconfig", help="print a kubeconfig for kubectl: all clusters, and one each")
    parser.add_argument("--server", default=DEFAULT_API_SERVER,
                        help=f"the read API's URL as kubectl will reach it (default {DEFAULT_API_SERVER})")
    add_read_api_tls(parser)  # written into the kubeconfig: the CA, the client certificate and key


def document(server: str, clusters: list[str], *, ca: bytes | None = None,
             user: dict[str, str] | None = None) -> dict[str, Any]:
    server = server.rstrip("/")
    entries = [(CONTEXT, server)] + [(f"{CONTEXT}-{name}", f"{server}/clusters/{name}") for name in clusters]
    cluster: dict[str, str] = {"certificate-authority-data": _b64(ca)} if ca is not None else {}
    if user is None and server.startswith("https://"):
        # The read API authenticates no one but by client certificate, and kubectl asks for a
        # user name and password for an https server whose user entry names no credential.
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
    body = await get_json(server, "/clusters")
    return [str(item["name"]) for item in body.get("items", [])]


async def _run(args: argparse.Namespace) -> str:
    server = read_api(args)
    try:
        ca = read_pem(args.ca, flag="--ca") if args.ca is not None else None
        user = ({"client-certificate-data": _b64(read_pem(args.client_cert, flag="--client-cert")),
                 "client-key-data": _b64(read_pem(args.client_key, flag="--client-key"))}
                if args.client_cert is not None and args.client_key is not None else None)
    except TlsError as exc:
        raise CommandError(str(exc)) from exc
    names = await cluster_names(server)
    return yaml.safe_dump(document(args.server, names, ca=ca, user=user), sort_keys=False).rstrip("\n")


def run(args: argparse.Namespace) -> int:
    return run_command(_run(args))
