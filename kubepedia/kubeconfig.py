"""``kubepedia kubeconfig``: a kubeconfig for kubectl, with a context for all clusters and
one per cluster (``/clusters/{name}`` on the same server)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import aiohttp
import orjson
import yaml

from kubepedia.config import DEFAULT_API_SERVER

CONTEXT = "kubepedia"


class KubeconfigError(RuntimeError):
    """A problem worth one line to the user."""


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
    url = server.rstrip("/") + "/clusters"
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            body = orjson.loads(await resp.read() or b"{}")
    except (aiohttp.ClientError, orjson.JSONDecodeError) as exc:
        raise KubeconfigError(f"cannot reach the kubepedia read API at {server}: {exc}") from exc
    if resp.status >= 400:
        raise KubeconfigError(str(body.get("message") or f"HTTP {resp.status} from {url}"))
    return [str(item["name"]) for item in body.get("items", [])]


def run(args: argparse.Namespace) -> int:
    try:
        names = asyncio.run(cluster_names(args.server))
    except KubeconfigError as exc:
        print(f"kubepedia: {exc}", file=sys.stderr)
        return 1
    print(yaml.safe_dump(document(args.server, names), sort_keys=False), end="")
    return 0
