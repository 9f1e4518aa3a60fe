"""``kubepedia serve`` as a user meets it: a real process, the embedded PostgreSQL, HTTP."""

from __future__ import annotations

import asyncio
import os
import ssl
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from kubepedia.tls import CERT_FILE
from syncer import secretbox
from syncer.embedded import EmbeddedPostgres
from tests.e2e.procs import Proc, wait_http


@asynccontextmanager
async def serving(data_dir: Path, log: Path, *extra: str) -> AsyncIterator[tuple[str, str, str]]:
    """``kubepedia serve`` on ports it picks (port 0) and reports in its ``log``."""
    proc = Proc(["-m", "kubepedia", "serve", "--data-dir", str(data_dir), "--api-listen", "127.0.0.1:0",
                 "--ingest-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", *extra],
                log=log, env={"KUBEPEDIA_DATABASE_URL": ""})
    await proc.start()
    try:
        ports = await proc.ports("api", "ingest", "admin")
        urls = (f"https://127.0.0.1:{ports['api']}",
                *(f"http://127.0.0.1:{ports[listener]}" for listener in ("ingest", "admin")))
        await wait_http(urls[0] + "/readyz", ssl=False)  # its certificate is made at start
        for url in urls[1:]:
            await wait_http(url + "/readyz")
        yield urls[0], urls[1], urls[2]
    finally:
        code = await proc.stop(within=60)
        assert code == 0, proc.run_output()[-3000:]


async def test_serve_on_embedded_postgres_keeps_data(embedded_data_dir: Path, tmp_path: Path) -> None:
    async with serving(embedded_data_dir, tmp_path / "serve.log") as (api, ingest, admin):
        trusted = ssl.create_default_context(cafile=str(embedded_data_dir / CERT_FILE))
        async with aiohttp.ClientSession() as session:
            for base in (api, ingest, admin):
                async with session.get(base + "/healthz", ssl=trusted if base == api else True) as resp:
                    assert resp.status == 200
                    assert await resp.json() == {"status": "ok"}
            # The read API is TLS with the data dir's certificate, and wants a token: the data
            # dir's read token reads everything.
            async with session.get(api + "/clusters", ssl=trusted) as resp:
                assert resp.status == 401
            read = {"Authorization": f"Bearer {(embedded_data_dir / 'read.token').read_text().strip()}"}
            async with session.get(api + "/clusters", ssl=trusted, headers=read) as resp:
                assert resp.status == 200
            token = (embedded_data_dir / "admin.token").read_text().strip()
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(admin + "/admin/v1/clusters", headers=headers) as resp:
                assert resp.status == 200
            async with session.get(ingest + "/admin/v1/clusters", headers=headers) as resp:
                assert resp.status == 404, "registration is not on the agents' listener"
        url = EmbeddedPostgres(data_dir=embedded_data_dir).url
        conn = await asyncpg.connect(url)
        await conn.execute("INSERT INTO clusters (name, mode) VALUES ('kept', 'push')")
        await conn.close()
    with pytest.raises(OSError):
        await asyncpg.connect(url, timeout=2)  # stopped with the process
    async with serving(embedded_data_dir, tmp_path / "serve.log"):
        conn = await asyncpg.connect(url)
        assert await conn.fetchval("SELECT name FROM clusters") == "kept"
        await conn.close()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory of the test's own, open as most are (0755), outside pytest's private tmp."""
    with tempfile.TemporaryDirectory(prefix="kubepedia-test-fresh-") as name:
        path = Path(name)
        path.chmod(0o755)
        yield path


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_serve_makes_a_fresh_data_dir_it_can_use(open_dir: Path, tmp_path: Path) -> None:
    # The data dir does not exist yet: serve makes it, once, with the mode the embedded
    # PostgreSQL needs, before the key file or anything else is written into it.
    data_dir = open_dir / "data"
    async with serving(data_dir, tmp_path / "serve.log") as (_, ingest, _admin):
        async with aiohttp.ClientSession() as session, session.get(ingest + "/readyz") as resp:
            assert resp.status == 200
    assert _mode(data_dir) == (0o711 if os.geteuid() == 0 else 0o700)  # root: the service user passes
    assert _mode(open_dir) == 0o755  # not made by kubepedia: untouched
    assert _mode(data_dir / secretbox.KEY_FILE_NAME) == 0o600


async def test_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubepedia", "serve", "--database-url",
        "postgresql://kp:hunter2@127.0.0.1:9/kubepedia", "--api-listen", "127.0.0.1:0",
        "--ingest-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    lines = stderr.decode().strip().splitlines()
    assert lines[-1].startswith("kubepedia: cannot reach PostgreSQL at 127.0.0.1:9/kubepedia")
    assert "hunter2" not in stderr.decode()


async def test_bad_listen_flag_is_a_usage_error() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubepedia", "serve", "--api-listen", "nonsense",
        stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "expected HOST:PORT" in stderr.decode()


def test_cluster_commands_go_to_the_admin_listener_by_default() -> None:
    from kubepedia.config import DEFAULT_ADMIN_LISTEN, DEFAULT_INGEST_LISTEN, DEFAULT_SERVER

    assert DEFAULT_SERVER == f"http://{DEFAULT_ADMIN_LISTEN}"
    assert DEFAULT_ADMIN_LISTEN != DEFAULT_INGEST_LISTEN
