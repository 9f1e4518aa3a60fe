"""Where kubepedia keeps its data by default, and the admin token file's rules."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import threading
from pathlib import Path

import pytest

from kubepedia import config
from kubepedia.config import ADMIN_TOKEN_FILE, default_data_dir, ensure_admin_token, read_admin_token
from syncer import secretfile
from syncer.secretfile import UnsafeSecretFile


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("KUBEPEDIA_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(config, "SYSTEM_DATA_DIR", tmp_path / "var" / "lib" / "kubepedia")
    return tmp_path


# -- the default data dir -----------------------------------------------------------------------

def test_a_user_keeps_data_in_the_xdg_data_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert default_data_dir() == home / ".local" / "share" / "kubepedia"
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "xdg"))
    assert default_data_dir() == home / "xdg" / "kubepedia"


def test_root_keeps_data_under_var_lib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBEPEDIA_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_data_dir() == Path("/var/lib/kubepedia")


def test_root_keeps_using_a_store_made_in_its_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    earlier = home / ".local" / "share" / "kubepedia"
    (earlier / "pgdata").mkdir(parents=True)
    assert default_data_dir() == earlier
    config.SYSTEM_DATA_DIR.mkdir(parents=True)  # once there is a system store, it wins
    assert default_data_dir() == config.SYSTEM_DATA_DIR


def test_an_explicit_data_dir_wins_for_root_too(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("KUBEPEDIA_DATA_DIR", str(home / "mine"))
    assert default_data_dir() == home / "mine"


# -- the admin token file ------------------------------------------------------------------------

def test_token_is_made_private_and_kept(tmp_path: Path) -> None:
    token = ensure_admin_token(tmp_path / "data")
    path = tmp_path / "data" / ADMIN_TOKEN_FILE
    st = path.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    assert ensure_admin_token(tmp_path / "data") == token
    assert read_admin_token(tmp_path / "data") == token
    assert [p.name for p in (tmp_path / "data").iterdir()] == [ADMIN_TOKEN_FILE]  # no temporary left


def test_servers_starting_together_share_one_token(tmp_path: Path) -> None:
    barrier = threading.Barrier(8)
    tokens: list[str] = []

    def one() -> None:
        barrier.wait()
        tokens.append(ensure_admin_token(tmp_path))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tokens) == 8 and len(set(tokens)) == 1
    assert (tmp_path / ADMIN_TOKEN_FILE).read_text().strip() == tokens[0]


def test_a_symlinked_token_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("planted\n")
    elsewhere.chmod(0o600)
    (tmp_path / ADMIN_TOKEN_FILE).symlink_to(elsewhere)
    for call in (ensure_admin_token, read_admin_token):
        with pytest.raises(UnsafeSecretFile, match="symbolic link") as refused:
            call(tmp_path)
        assert str(tmp_path / ADMIN_TOKEN_FILE) in str(refused.value)


def test_a_dangling_symlink_is_refused_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    (tmp_path / ADMIN_TOKEN_FILE).symlink_to(target)
    with pytest.raises(UnsafeSecretFile, match="symbolic link"):
        ensure_admin_token(tmp_path)
    assert not target.exists()


def test_a_token_open_to_others_is_refused(tmp_path: Path) -> None:
    ensure_admin_token(tmp_path)
    path = tmp_path / ADMIN_TOKEN_FILE
    for mode in (0o644, 0o640, 0o602):
        path.chmod(mode)
        with pytest.raises(UnsafeSecretFile, match=rf"mode {mode:04o}.*chmod 600 {path}"):
            ensure_admin_token(tmp_path)
        with pytest.raises(UnsafeSecretFile, match=rf"mode {mode:04o}"):
            read_admin_token(tmp_path)


def test_a_token_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / ADMIN_TOKEN_FILE).mkdir(mode=0o700)
    with pytest.raises(UnsafeSecretFile, match="not a regular file"):
        ensure_admin_token(tmp_path)
    (tmp_path / ADMIN_TOKEN_FILE).rmdir()
    os.mkfifo(tmp_path / ADMIN_TOKEN_FILE, 0o600)  # opening it must not wait for a writer
    with pytest.raises(UnsafeSecretFile, match="not a regular file"):
        read_admin_token(tmp_path)


def test_someone_elses_token_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_admin_token(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(tmp_path).st_uid + 4242)
    with pytest.raises(UnsafeSecretFile, match=r"owned by .* not by .*chown"):
        ensure_admin_token(tmp_path)


async def test_serve_refuses_an_open_token_in_one_line(tmp_path: Path, db_url: str) -> None:
    ensure_admin_token(tmp_path)
    (tmp_path / ADMIN_TOKEN_FILE).chmod(0o644)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubepedia", "serve", "--database-url", db_url, "--data-dir", str(tmp_path),
        "--api-listen", "127.0.0.1:0", "--ingest-listen", "127.0.0.1:0", stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    lines = []
    while line := (await proc.stderr.readline()).decode():
        lines.append(line)
        if "listening" in line:  # it took the token: stop it, the test has failed
            proc.terminate()
    await proc.wait()
    assert proc.returncode == 1, "".join(lines)
    assert lines[-1].strip() == (
        f"kubepedia: refusing admin token file {tmp_path / ADMIN_TOKEN_FILE}: mode 0644 lets group or "
        f"others at it; run `chmod 600 {tmp_path / ADMIN_TOKEN_FILE}`")


async def test_cluster_command_refuses_a_symlinked_token_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("planted\n")
    (tmp_path / ADMIN_TOKEN_FILE).symlink_to(tmp_path / "elsewhere")
    env = {k: v for k, v in os.environ.items() if k != "KUBEPEDIA_ADMIN_TOKEN"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubepedia", "cluster", "--data-dir", str(tmp_path), "list",
        stderr=asyncio.subprocess.PIPE, env=env)
    _, stderr = await proc.communicate()
    assert proc.returncode == 1
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"kubepedia: refusing admin token file {tmp_path / ADMIN_TOKEN_FILE}: it is a symbolic link")


def test_secret_files_are_made_exclusively(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("theirs\n")
    (tmp_path / "link").symlink_to(target)
    for taken in (tmp_path / "link", target):  # neither followed nor reused
        with pytest.raises(OSError):
            secretfile.write_temporary(taken, "mine")
    assert target.read_text() == "theirs\n"
    secretfile.write_temporary(tmp_path / "new", "mine")
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o600


def test_an_unreadable_token_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    path = not_a_dir / ADMIN_TOKEN_FILE
    with pytest.raises(secretfile.SecretFileError, match=f"cannot read admin token file {path}: Not a dir"):
        read_admin_token(not_a_dir)
