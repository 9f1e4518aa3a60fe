"""``kubepedia serve`` as a user meets it: a real process, the embedded PostgreSQL, HTTP."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from syncer.embedded import EmbeddedPostgres
from tests.e2e.procs import Proc, wait_http


@asynccontextmanager
async def serving(data_dir: Path, *extra: str) -> AsyncIterator[tuple[str, str]]:
    """``kubepedia serve`` on ports it picks (port 0) and reports in its log."""
    proc = Proc(["-m", "kubepedia", "serve", "--data-dir", str(data_dir), "--api-listen", "127.0.0.1:0",
                 "--ingest-listen", "127.0.0.1:0", *extra],
                log=data_dir / "serve.log", env={"KUBEPEDIA_DATABASE_URL": ""})
    await proc.start()
    try:
        ports = await proc.ports("api", "ingest")
        urls = (f"http://127.0.0.1:{ports['api']}", f"http://127.0.0.1:{ports['ingest']}")
        await wait_http(urls[0] + "/readyz")
        await wait_http(urls[1] + "/readyz")
        yield urls
    finally:
        code = await proc.stop(within=60)
        assert code == 0, proc.run_output()[-3000:]


async def test_serve_on_embedded_postgres_keeps_data(tmp_path: Path) -> None:
    async with serving(tmp_path) as (api, ingest):
        async with aiohttp.ClientSession() as session:
            for base in (api, ingest):
                async with session.get(base + "/healthz") as resp:
                    assert resp.status == 200
                    assert await resp.json() == {"status": "ok"}
        url = EmbeddedPostgres(data_dir=tmp_path).url
        conn = await asyncpg.connect(url)
        await conn.execute("INSERT INTO clusters (name, mode) VALUES ('kept', 'push')")
        await conn.close()
    with pytest.raises(OSError):
        await asyncpg.connect(url, timeout=2)  # stopped with the process
    async with serving(tmp_path):
        conn = await asyncpg.connect(url)
        assert await conn.fetchval("SELECT name FROM clusters") == "kept"
        await conn.close()


async def test_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubepedia", "serve", "--database-url",
        "postgresql://kp:hunter2@127.0.0.1:9/kubepedia", "--api-listen", "127.0.0.1:0",
        "--ingest-listen", "127.0.0.1:0", stderr=asyncio.subprocess.PIPE)
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
