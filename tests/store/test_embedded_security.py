"""The embedded PostgreSQL and the directories around it: under root the server runs as the
service user, which must reach its data dir; kubepedia changes no directory it did not make.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import stat
import sys
from pathlib import Path

import pytest

from syncer import embedded
from syncer.embedded import EmbeddedError, EmbeddedPostgres

ROOT = os.geteuid() == 0
as_root = pytest.mark.skipif(not ROOT, reason="a service user runs the server only under root")


# -- what the service user may reach -------------------------------------------------------------

def test_directories_get_the_modes_kubepedia_chose(embedded_data_dir: Path) -> None:
    pg = EmbeddedPostgres(data_dir=embedded_data_dir / "made" / "data")
    embedded.start(pg)
    embedded.stop(pg, mode="immediate")
    assert stat.S_IMODE(embedded_data_dir.stat().st_mode) == 0o711  # the test's own, untouched
    assert stat.S_IMODE(pg.pgdata.stat().st_mode) == 0o700
    if ROOT:
        assert stat.S_IMODE(pg.data_dir.stat().st_mode) == 0o711
        assert stat.S_IMODE(pg.data_dir.parent.stat().st_mode) & 0o111 == 0o111
        assert pg.pgdata.stat().st_uid == pwd.getpwnam(embedded.SERVICE_USER).pw_uid
    else:
        assert stat.S_IMODE(pg.data_dir.stat().st_mode) == 0o700


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
