"""Where things live by default, and how a HOST:PORT flag is read."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_API_LISTEN = "127.0.0.1:8080"
DEFAULT_INGEST_LISTEN = "127.0.0.1:8081"


def default_data_dir() -> Path:
    """``$KUBEPEDIA_DATA_DIR``, else the user's data directory (XDG)."""
    explicit = os.environ.get("KUBEPEDIA_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "kubepedia"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) into its parts, or ``ValueError``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)
