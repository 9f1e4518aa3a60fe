"""Where things live by default, and how a HOST:PORT flag is read."""

from __future__ import annotations

import os
from pathlib import Path

from syncer import datadir, secretfile

DEFAULT_API_LISTEN = "127.0.0.1:8080"
DEFAULT_INGEST_LISTEN = "127.0.0.1:8081"
DEFAULT_API_SERVER = "https://127.0.0.1:8080"  # the read API serves TLS by default
SYSTEM_DATA_DIR = Path("/var/lib/kubepedia")
DEFAULT_ADMIN_LISTEN = "127.0.0.1:8082"


def default_data_dir() -> Path:
    """``$KUBEPEDIA_DATA_DIR``, else the user's data directory (XDG); for root, a system one.

    Under root the embedded PostgreSQL runs as a service user that must reach the data dir,
    and root's home is closed to it (and must stay so): root's default is /var/lib. A store
    that an earlier kubepedia made in root's home stays where it is, so it keeps being used.
    """
    explicit = os.environ.get("KUBEPEDIA_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    user_dir = Path(base) / "kubepedia"
    if os.geteuid() != 0:
        return user_dir
    if (user_dir / "pgdata").exists() and not SYSTEM_DATA_DIR.exists():
        return user_dir
    return SYSTEM_DATA_DIR


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) into its parts, or ``ValueError``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


DEFAULT_SERVER = "http://127.0.0.1:8082"  # the admin listener, where ``kubepedia cluster`` goes
ADMIN_TOKEN_FILE = "admin.token"


def ensure_admin_token(data_dir: Path) -> str:
    """The registry's admin token, created on first start; readable by its owner only.

    Two servers starting at the same moment end up with the same token; a token file that
    is a link, not a regular file, someone else's, or open to group or others is refused
    (``secretfile.UnsafeSecretFile``, one line naming the file and the fix). A data dir that
    does not exist yet is made private; ``kubepedia serve`` makes it before, fit for its
    embedded PostgreSQL when that lives there.
    """
    datadir.make(data_dir, embedded_server=False)
    return secretfile.ensure(data_dir / ADMIN_TOKEN_FILE, "admin token")


def read_admin_token(data_dir: Path) -> str | None:
    """``$KUBEPEDIA_ADMIN_TOKEN``, else the server's token file (under the same rules)."""
    explicit = os.environ.get("KUBEPEDIA_ADMIN_TOKEN")
    if explicit:
        return explicit
    return secretfile.read(data_dir / ADMIN_TOKEN_FILE, "admin token") or None


READ_TOKEN_FILE = "read.token"


def ensure_read_token(data_dir: Path) -> str:
    """The read API's own token, created on first start like the admin token: it reads every
    cluster (``kubepedia serve`` grants it everything), and is what ``kubepedia kubeconfig``,
    ``report`` and ``history`` use when given no other."""
    datadir.make(data_dir, embedded_server=False)
    return secretfile.ensure(data_dir / READ_TOKEN_FILE, "read token")


def read_api_token(data_dir: Path, explicit: str | None = None) -> str | None:
    """``explicit`` (``--token``), else ``$KUBEPEDIA_TOKEN``, else the server's read token file
    (when this user may read it)."""
    if explicit:
        return explicit
    from_env = os.environ.get("KUBEPEDIA_TOKEN")
    if from_env:
        return from_env
    return stored_read_token(data_dir)


def stored_read_token(data_dir: Path) -> str | None:
    """The data dir's read token if there is one (under the admin token's rules)."""
    path = data_dir / READ_TOKEN_FILE
    if not path.exists():
        return None
    return secretfile.read(path, "read token") or None


def parse_duration(value: str) -> float:
    """``7d``, ``12h``, ``30m`` or ``90s`` (or plain seconds) in seconds, or ``ValueError``."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    text = value.strip().lower()
    number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
    if not number.replace(".", "", 1).isdigit() or float(number) <= 0:
        raise ValueError(f"expected a duration such as 7d, 12h or 30m, got {value!r}")
    return float(number) * unit
