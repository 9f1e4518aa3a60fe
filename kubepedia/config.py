"""Where things live by default, and how a HOST:PORT flag is read."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_API_LISTEN = "127.0.0.1:8080"
DEFAULT_INGEST_LISTEN = "127.0.0.1:8081"
DEFAULT_ADMIN_LISTEN = "127.0.0.1:8082"


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


DEFAULT_SERVER = "http://127.0.0.1:8082"  # the admin listener, where ``kubepedia cluster`` goes
ADMIN_TOKEN_FILE = "admin.token"


def ensure_admin_token(data_dir: Path) -> str:
    """The registry's admin token, created on first start; readable by its owner only."""
    import secrets

    path = data_dir / ADMIN_TOKEN_FILE
    existing = path.read_text().strip() if path.exists() else ""
    if existing:
        return existing
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # Written whole under a temporary name, then renamed: a second server starting at the
    # same moment reads either nothing or a complete token, never half of one.
    tmp = path.with_name(f".{ADMIN_TOKEN_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    if path.exists():  # there but empty: damaged, replace it
        os.replace(tmp, path)
        return token
    try:
        os.link(tmp, path)  # fails if another process won the race: use its token
    except FileExistsError:
        token = path.read_text().strip()
    finally:
        tmp.unlink()
    return token


def read_admin_token(data_dir: Path) -> str | None:
    explicit = os.environ.get("KUBEPEDIA_ADMIN_TOKEN")
    if explicit:
        return explicit
    path = data_dir / ADMIN_TOKEN_FILE
    return path.read_text().strip() if path.exists() else None
