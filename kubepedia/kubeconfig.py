"""``kubepedia kubeconfig``: a kubeconfig for kubectl, with a context for all clusters and
one per cluster (``/clusters/{name}`` on the same server)."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from kubepedia.config import DEFAULT_API_SERVER
from kubepedia.http import Server, get_json, run_command

CONTEXT = "kubepedia"


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("kubeconfig", help="print a kubeconfig for kubectl: all clusters, and one each")
    parser.add_argument("--server", default=DEFAULT_API_SERVER,
                        help=f"the read API's URL as kubectl will reach it (default {DEFAULT_API_SERVER})")


def document(server: str, clusters: list[str]) -> dict[str, Any]:
    server = server.rstrip("/")
    entries = [(CONTEXT, server)] + [(f"{CONTEXT}-{name}", f"{server}/clusters/{name}") for name in clusters]
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": url}} for name, url in entries],
        "users": [{"name": CONTEXT, "user": {}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": CONTEXT}} for name, _ in entries],
        "current-context": CONTEXT,
    }


async def cluster_names(server: str) -> list[str]:
    body = await get_json(Server(url=server), "/clusters")
    return [str(item["name"]) for item in body.get("items", [])]


async def _run(args: argparse.Namespace) -> str:
    names = await cluster_names(args.server)
    return yaml.safe_dump(document(args.server, names), sort_keys=False).rstrip("\n")


def run(args: argparse.Namespace) -> int:
    return run_command(_run(args))
