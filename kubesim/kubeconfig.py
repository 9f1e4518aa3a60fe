"""Kubeconfigs pointing at kubesim servers (plain http, token user): one cluster's, or
one with a context per cluster of a process serving several."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


def kubeconfig(url: str, name: str = "kubesim", namespace: str = "default") -> dict[str, Any]:
    return kubeconfig_for([(name, url)], namespace)


def kubeconfig_for(clusters: Sequence[tuple[str, str]], namespace: str = "default") -> dict[str, Any]:
    """A context per (name, url); the first is the current one."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": url}} for name, url in clusters],
        "users": [{"name": f"{name}-user", "user": {"token": "kubesim-token"}} for name, _ in clusters],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": f"{name}-user", "namespace": namespace}}
            for name, _ in clusters
        ],
        "current-context": clusters[0][0],
        "preferences": {},
    }


def write_kubeconfig(path: str | Path, url: str, name: str = "kubesim") -> Path:
    return write_kubeconfig_for(path, [(name, url)])


def write_kubeconfig_for(path: str | Path, clusters: Sequence[tuple[str, str]]) -> Path:
    target = Path(path)
    target.write_text(yaml.safe_dump(kubeconfig_for(clusters), sort_keys=False))
    return target
