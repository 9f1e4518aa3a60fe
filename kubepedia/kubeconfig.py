"""``kubepedia kubeconfig``: a kubeconfig for kubectl, with a context for all clusters and
one per cluster (``/clusters/{name}`` on the same server)."""

from __future__ import annotations

import argparse
import base64
from typing import Any

import yaml

from kubepedia.config import DEFAULT_API_SERVER
from kubepedia.http import Server, add_read_api_arguments, get_json, read_api, read_api_ca, run_command

CONTEXT = "kubepedia"


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("kubeconfig", help="print a kubeconfig for kubectl: all clusters, and one each")
    add_read_api_arguments(parser, default_server=DEFAULT_API_SERVER)


def document(server: str, clusters: list[str], *, token: str | None = None,
             ca: bytes | None = None) -> dict[str, Any]:
    """A context for all clusters and one per cluster; the user carries ``token``, and an
    https server is trusted by ``ca`` (PEM)."""
    server = server.rstrip("/")
    entries = [(CONTEXT, server)] + [(f"{CONTEXT}-{name}", f"{server}/clusters/{name}") for name in clusters]
    trust = {"certificate-authority-data": base64.b64encode(ca).decode()} if ca is not None else {}
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": url, **trust}} for name, url in entries],
        "users": [{"name": CONTEXT, "user": {"token": token} if token else {}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": CONTEXT}} for name, _ in entries],
        "current-context": CONTEXT,
    }


async def cluster_names(server: Server) -> list[str]:
    """The clusters the caller may read (``/clusters`` lists only those)."""
    body = await get_json(server, "/clusters")
    return [str(item["name"]) for item in body.get("items", [])]


async def _run(args: argparse.Namespace) -> str:
    server = read_api(args)
    names = await cluster_names(server)
    token = server.headers.get("Authorization", "").removeprefix("Bearer ") or None
    doc = document(args.server, names, token=token, ca=read_api_ca(args))
    return yaml.safe_dump(doc, sort_keys=False).rstrip("\n")


def run(args: argparse.Namespace) -> int:
    return run_command(_run(args))
