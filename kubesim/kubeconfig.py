"""A kubeconfig pointing at a kubesim server (plain http, token user)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def kubeconfig(url: str, name: str = "kubesim", namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": url}}],
        "users": [{"name": f"{name}-user", "user": {"token": "kubesim-token"}}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": f"{name}-user", "namespace": namespace}}
        ],
        "current-context": name,
        "preferences": {},
    }


def write_kubeconfig(path: str | Path, url: str, name: str = "kubesim") -> Path:
    target = Path(path)
    target.write_text(yaml.safe_dump(kubeconfig(url, name), sort_keys=False))
    return target
