"""Who may use the embedded PostgreSQL: only whoever holds its password file.

Each test runs a server of its own (not the session's), from nothing or from a data dir made
the way an earlier kubepedia made it. Under root the server runs as the service user, and
the tests marked ``as_root`` check what that user may reach.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest

from agent.logs import KeyValueFormatter
from syncer import embedded
from syncer.embedded import EmbeddedError, EmbeddedPostgres
from syncer.secretfile import UnsafeSecretFile
from tests.conftest import service_tempdir

ROOT = os.geteuid() == 0
as_root = pytest.mark.skipif(not ROOT, reason="a service user runs the server only under root")
REFUSED = asyncpg.InvalidAuthorizationSpecificationError  # InvalidPasswordError and kin


@dataclass
class Fresh:
    pg: EmbeddedPostgres
    base: Path  # made by the test; kubepedia made base / "made" / "data" itself
    argv: list[str]  # every argument of every program run during the first start
    logs: str  # everything logged during the first start, as printed


@pytest.fixture(scope="module")
def fresh() -> Iterator[Fresh]:
    """One server started from nothing, watched while it starts."""
    argv: list[str] = []
    real_run = subprocess.run

    def recording_run(args: list[str], *rest: Any, **kwargs: Any) -> Any:
        argv.extend(map(str, args))
        return real_run(args, *rest, **kwargs)

    with service_tempdir("kubepedia-test-own-") as base:
        pg = EmbeddedPostgres(data_dir=base / "made" / "data")
        lines: list[str] = []
        handler = logging.Handler()
        handler.setFormatter(KeyValueFormatter("%(levelname)s %(name)s %(message)s"))
        handler.emit = lambda record: lines.append(handler.format(record))  # type: ignore[method-assign]
        logger = logging.getLogger("syncer")
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(subprocess, "run", recording_run)
            try:
                embedded.start(pg)
            finally:
                logger.removeHandler(handler)
                logger.setLevel(level)
        try:
            yield Fresh(pg=pg, base=base, argv=argv, logs="\n".join(lines))
        finally:
            embedded.stop(pg, mode="immediate")


async def assert_refused(*args: Any, **kwargs: Any) -> None:
    try:
        conn = await asyncpg.connect(*args, **kwargs)
    except REFUSED:
        return
    await conn.close()
    pytest.fail("connected without the password")


def _without_password(url: str, password: str) -> str:
    return url.replace(f":{quote(password, safe='')}@", "@")


async def test_connections_without_the_password_are_refused(fresh: Fresh) -> None:
    pg, password = fresh.pg, fresh.pg.password()
    bare = _without_password(pg.url, password)
    assert bare != pg.url
    await assert_refused(bare)
    await assert_refused(bare, password="not-" + password)
    # the Unix socket in pgdata asks too
    await assert_refused(host=str(pg.pgdata), port=pg.port(), user="postgres", database="kubepedia")
    conn = await asyncpg.connect(pg.url)
    try:
        assert await conn.fetchval("SELECT current_user") == "postgres"
    finally:
        await conn.close()


def test_the_password_file_is_private(fresh: Fresh) -> None:
    pg = fresh.pg
    st = pg.password_file.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    assert not list(pg.data_dir.glob(".*"))  # initdb's temporary password file is gone


def test_directories_get_the_modes_kubepedia_chose(fresh: Fresh) -> None:
    pg = fresh.pg
    assert stat.S_IMODE(fresh.base.stat().st_mode) == 0o711  # the test's own, untouched
    assert stat.S_IMODE(pg.pgdata.stat().st_mode) == 0o700
    if ROOT:
        assert stat.S_IMODE(pg.data_dir.stat().st_mode) == 0o711
        assert stat.S_IMODE(pg.data_dir.parent.stat().st_mode) & 0o111 == 0o111
        assert pg.pgdata.stat().st_uid == pwd.getpwnam(embedded.SERVICE_USER).pw_uid
    else:
        assert stat.S_IMODE(pg.data_dir.stat().st_mode) == 0o700


def test_the_password_never_reaches_a_command_line_or_a_log(fresh: Fresh) -> None:
    password = fresh.pg.password()
    assert any(arg.startswith("--pwfile=") for arg in fresh.argv)
    assert "--auth=trust" not in fresh.argv
    assert not [arg for arg in fresh.argv if password in arg]
    assert "initializing embedded PostgreSQL" in fresh.logs
    assert password not in fresh.logs
    assert f"postgres:{quote(password, safe='')}@127.0.0.1:{fresh.pg.port()}/" in fresh.pg.url


def test_an_open_or_linked_password_file_is_refused(fresh: Fresh) -> None:
    pg = fresh.pg
    pg.password_file.chmod(0o640)
    try:
        for use in (lambda: embedded.start(pg), lambda: pg.url):
            with pytest.raises(UnsafeSecretFile, match=rf"mode 0640.*chmod 600 {pg.password_file}"):
                use()
    finally:
        pg.password_file.chmod(0o600)
    moved = pg.data_dir / "moved"
    pg.password_file.rename(moved)
    pg.password_file.symlink_to(moved)
    try:
        for use in (lambda: embedded.start(pg), lambda: pg.url):
            with pytest.raises(UnsafeSecretFile, match="symbolic link"):
                use()
    finally:
        pg.password_file.unlink()
        moved.rename(pg.password_file)
    embedded.start(pg)  # as it was: the running server is found and used


# -- data dirs from before passwords ------------------------------------------------------------

def _legacy_run(args: list[str]) -> None:
    """Run a PostgreSQL program as an earlier kubepedia did (as the service user under root)."""
    user = embedded._run_as()
    extra: dict[str, Any] = {}
    if user is not None:
        entry = pwd.getpwnam(user)
        extra = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "cwd": "/"}
    subprocess.run(args, check=True, capture_output=True, **extra)


def _make_trusting_data_dir(pg: EmbeddedPostgres) -> None:
    user = embedded._run_as()
    if user is not None:
        pg.pgdata.mkdir(mode=0o700)
        entry = pwd.getpwnam(user)
        os.chown(pg.pgdata, entry.pw_uid, entry.pw_gid)
    _legacy_run([str(embedded._bin("initdb")), "-D", str(pg.pgdata), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--locale=C", "--no-sync"])


def _legacy_ctl(pg: EmbeddedPostgres, action: str) -> None:
    options = (f"-c listen_addresses=127.0.0.1 -c port={pg.port()} "
               f"-c unix_socket_directories={pg.pgdata}")
    _legacy_run([str(embedded._bin("pg_ctl")), "-D", str(pg.pgdata), "-w", "-m", "fast",
                 "-l", str(pg.pgdata / "server.log"), "-o", options, action])


@pytest.mark.parametrize("running", [False, True], ids=["stopped", "running"])
async def test_a_data_dir_that_trusted_local_connections_now_asks_for_the_password(
        embedded_data_dir: Path, running: bool) -> None:
    pg = EmbeddedPostgres(data_dir=embedded_data_dir)
    await asyncio.to_thread(_make_trusting_data_dir, pg)
    await asyncio.to_thread(_legacy_ctl, pg, "start")
    trusting = f"postgresql://postgres@127.0.0.1:{pg.port()}"
    try:
        conn = await asyncpg.connect(f"{trusting}/postgres")
        await conn.execute("CREATE DATABASE kubepedia")
        await conn.close()
        conn = await asyncpg.connect(f"{trusting}/kubepedia")
        await conn.execute("CREATE TABLE kept AS SELECT 'from before' AS note")
        await conn.close()
        if not running:
            await asyncio.to_thread(_legacy_ctl, pg, "stop")
        await asyncio.to_thread(embedded.start, pg)
        for database in ("kubepedia", "postgres"):
            await assert_refused(f"{trusting}/{database}")
        conn = await asyncpg.connect(pg.url)
        try:
            assert await conn.fetchval("SELECT note FROM kept") == "from before"
        finally:
            await conn.close()
        assert stat.S_IMODE(pg.password_file.stat().st_mode) == 0o600
    finally:
        await asyncio.to_thread(embedded.stop, pg, mode="immediate")
    await asyncio.to_thread(embedded.start, pg)  # and so it stays, across restarts
    try:
        await assert_refused(f"{trusting}/kubepedia")
    finally:
        await asyncio.to_thread(embedded.stop, pg, mode="immediate")


def test_a_lost_password_file_is_reported_not_replaced(embedded_data_dir: Path) -> None:
    pg = EmbeddedPostgres(data_dir=embedded_data_dir)
    pg.pgdata.mkdir()
    (pg.pgdata / "PG_VERSION").write_text("18\n")
    (pg.pgdata / "pg_hba.conf").write_text(embedded.HBA)
    if ROOT:
        os.chown(pg.pgdata, pwd.getpwnam(embedded.SERVICE_USER).pw_uid, -1)
    with pytest.raises(EmbeddedError, match=rf"{pg.password_file} is missing.*restore the file"):
        embedded.start(pg)
    assert not pg.password_file.exists()


# -- what the service user may reach -------------------------------------------------------------

def _unreachable(data_dir: Path, closed: Path, mode: str) -> str:
    return (f"the PostgreSQL service user {embedded.SERVICE_USER} cannot reach {data_dir}: {closed} is "
            f"mode {mode}; run `chmod o+x {closed}` or choose a --data-dir it can reach, such as one "
            "under /var/lib")


@as_root
def test_a_data_dir_under_a_closed_directory_is_refused_and_left_closed(embedded_data_dir: Path) -> None:
    closed = embedded_data_dir / "closed"
    closed.mkdir(mode=0o700)
    data_dir = closed / "data"
    with pytest.raises(EmbeddedError) as refused:
        embedded.start(EmbeddedPostgres(data_dir=data_dir))
    assert str(refused.value) == _unreachable(data_dir, closed, "0700")
    assert stat.S_IMODE(closed.stat().st_mode) == 0o700
    assert not (data_dir / "pgdata").exists()  # stopped before initdb


@as_root
def test_a_closed_data_dir_is_refused_and_left_closed(embedded_data_dir: Path) -> None:
    data_dir = embedded_data_dir / "private"
    data_dir.mkdir(mode=0o700)
    with pytest.raises(EmbeddedError) as refused:
        embedded.start(EmbeddedPostgres(data_dir=data_dir))
    assert str(refused.value) == _unreachable(data_dir, data_dir, "0700")
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


@as_root
def test_reach_is_tried_as_the_service_user_not_read_from_mode_bits(embedded_data_dir: Path) -> None:
    # o+x is set, but the service user owns the directory, so the owner's bits (none) apply.
    odd = embedded_data_dir / "odd"
    odd.mkdir()
    odd.chmod(0o077)
    os.chown(odd, pwd.getpwnam(embedded.SERVICE_USER).pw_uid, -1)
    with pytest.raises(EmbeddedError, match=f"cannot reach {odd}/data: {odd} is mode 0077"):
        embedded.start(EmbeddedPostgres(data_dir=odd / "data"))


@as_root
def test_programs_the_service_user_cannot_reach_are_refused(
        embedded_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = embedded_data_dir / "venv"
    programs = venv / "pginstall" / "bin"
    programs.mkdir(parents=True)
    (programs / "postgres").touch(mode=0o755)
    venv.chmod(0o700)
    monkeypatch.setattr(embedded, "_bin", lambda name: programs / name)
    with pytest.raises(EmbeddedError) as refused:
        embedded.start(EmbeddedPostgres(data_dir=embedded_data_dir / "data"))
    assert str(refused.value).startswith(
        f"the PostgreSQL service user {embedded.SERVICE_USER} cannot reach the PostgreSQL programs in "
        f"{programs}: {venv} is mode 0700; run `chmod o+x {venv}`")
    assert stat.S_IMODE(venv.stat().st_mode) == 0o700


@as_root
async def test_serve_reports_an_unreachable_data_dir_in_one_line(embedded_data_dir: Path) -> None:
    closed = embedded_data_dir / "closed"
    closed.mkdir(mode=0o700)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubepedia", "serve", "--data-dir", str(closed / "data"),
        "--api-listen", "127.0.0.1:0", "--ingest-listen", "127.0.0.1:0",
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "KUBEPEDIA_DATABASE_URL": ""})
    assert proc.stderr is not None
    lines = []
    while line := (await proc.stderr.readline()).decode():
        lines.append(line)
        if "listening" in line:  # it started: stop it, the test has failed
            proc.terminate()
    await proc.wait()
    assert proc.returncode == 1, "".join(lines)
    assert lines[-1].strip() == "kubepedia: " + _unreachable(closed / "data", closed, "0700")
