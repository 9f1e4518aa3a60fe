"""Kubeconfigs at rest: sealed in the database, opened by pull mode, rotated by
``kubepedia keys``, refused (not crashed on) when altered; an unsafe key file stops the
server at start."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
import yaml

import kubesim
from kubesim.kubeconfig import kubeconfig as sim_kubeconfig
from syncer import registry, secretbox
from syncer.registry import Kubeconfigs
from syncer.secretbox import KeyFileError, SecretBox
from tests.convergence import wait_converged
from tests.e2e.procs import cleanup, start_server
from tests.syncer.conftest import Ingest
from tests.syncer.test_kubeconfig_safety import health


async def register(ingest: Ingest, name: str, url: str) -> str:
    document = yaml.safe_dump(sim_kubeconfig(url))
    status, body = await ingest.admin("POST", "/admin/v1/clusters", {
        "name": name, "mode": "pull", "kubeconfig": document,
        "settings": {"selection": {"discoveryRefreshSeconds": 1}}})
    assert status == 201, body
    return document


async def stored(pool: asyncpg.Pool, name: str) -> str:
    value: str = await pool.fetchval("SELECT kubeconfig FROM clusters WHERE name = $1", name)
    return value


async def add_configmap(url: str, name: str) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            url + "/api/v1/namespaces/default/configmaps", json={"metadata": {"name": name}}) as resp:
        assert resp.status == 201


async def keys_command(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubepedia", "keys", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[kubesim.SimServer]:
    async with kubesim.running(generate={"namespaces": 2, "pods": 10}, seed=17) as server:
        yield server


async def test_kubeconfigs_are_sealed_at_rest_and_pull_mode_syncs(ingest: Ingest, pool: asyncpg.Pool,
                                                                  key_file: Path,
                                                                  sim: kubesim.SimServer) -> None:
    document = await register(ingest, "sealed", sim.url)
    value = await stored(pool, "sealed")
    assert value.startswith(f"kpenc1:{SecretBox(key_file).key_ids[0]}:")
    for clear in ("kubesim-token", sim.url, "users", "apiVersion"):
        assert clear not in value
    assert SecretBox(key_file).open(value, context="clusters/sealed/kubeconfig") == document
    await wait_converged(pool, "sealed", sim.url, within=120)


async def test_rotation_reseals_and_the_old_key_can_go(ingest: Ingest, pool: asyncpg.Pool, db_url: str,
                                                       key_file: Path, sim: kubesim.SimServer,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="syncer.pull")
    await register(ingest, "rotating", sim.url)
    await wait_converged(pool, "rotating", sim.url, within=120)
    [old] = SecretBox(key_file).key_ids
    where = ("--database-url", db_url, "--secret-key-file", str(key_file))
    # A key added by hand but not used yet: the old one still seals the row, so it stays.
    added = secretbox.add_key(key_file)
    code, _, err = await keys_command(*where, "prune")
    assert code == 1 and err == (f"kubepedia: key {old} still seals 1 stored kubeconfig(s): "
                                 "run 'kubepedia keys rotate' first\n")
    assert SecretBox(key_file).key_ids == [old, added.id]
    code, out, err = await keys_command(*where, "rotate")
    assert code == 0, err
    newest = SecretBox(key_file).key_ids[-1]
    assert out.splitlines()[0] == f"key {newest} added; 1 stored kubeconfig(s) re-sealed with it"
    assert secretbox.key_id_of(await stored(pool, "rotating")) == newest
    code, out, err = await keys_command(*where, "prune")
    assert code == 0, err
    assert out == f"dropped key {old}, {added.id}; key {newest} remains\n"
    assert SecretBox(key_file).key_ids == [newest]
    # The running server follows the key file: it still opens the row and keeps syncing,
    # and seals new registrations with the new key.
    await add_configmap(sim.url, "after-rotation")
    await wait_converged(pool, "rotating", sim.url, within=120)
    await register(ingest, "later", sim.url)
    assert secretbox.key_id_of(await stored(pool, "later")) == newest
    assert (await health(ingest, "rotating", healthy=True))["healthMessage"] is None
    # Pull mode compares opened documents: a re-sealed, unchanged kubeconfig is no reason
    # to stop and restart the cluster's sync.
    assert [r for r in caplog.records if r.getMessage() == "pull cluster released"] == []


async def test_a_tampered_kubeconfig_is_refused_and_pull_mode_goes_on(ingest: Ingest, pool: asyncpg.Pool,
                                                                      key_file: Path,
                                                                      sim: kubesim.SimServer) -> None:
    await register(ingest, "victim", sim.url)
    await register(ingest, "bystander", sim.url)
    await wait_converged(pool, "bystander", sim.url, within=120)
    await health(ingest, "victim", healthy=True)
    value = await stored(pool, "victim")
    flipped = value[:-8] + ("A" if value[-8] != "A" else "B") + value[-7:]
    await pool.execute("UPDATE clusters SET kubeconfig = $1 WHERE name = 'victim'", flipped)
    entry = await health(ingest, "victim", healthy=False, reason="configuration unusable")
    key_id = secretbox.key_id_of(value)
    assert entry["healthMessage"] == ("configuration unusable: the stored kubeconfig cannot be used: does "
                                      f"not open with key {key_id}: altered, or sealed for another place")
    # A value moved to another cluster's row does not open there either.
    await pool.execute("UPDATE clusters SET kubeconfig = $1 WHERE name = 'victim'",
                       await stored(pool, "bystander"))
    opened = {c.name: c for c in await registry.pull_clusters(pool, Kubeconfigs(box=SecretBox(key_file)))}
    assert opened["victim"].kubeconfig is None and opened["bystander"].kubeconfig is not None
    assert (opened["victim"].kubeconfig_error or "").endswith("altered, or sealed for another place")
    await add_configmap(sim.url, "still-synced")
    await wait_converged(pool, "bystander", sim.url, within=120)
    assert (await health(ingest, "bystander", healthy=True))["healthMessage"] is None


async def test_clear_rows_are_sealed_at_start_and_refused_before(pool: asyncpg.Pool, key_file: Path) -> None:
    """Rows written in clear by a version that did not seal them."""
    kubeconfigs = Kubeconfigs(box=SecretBox(key_file))
    document = yaml.safe_dump(sim_kubeconfig("http://127.0.0.1:9"))
    await pool.execute("INSERT INTO clusters (name, mode, kubeconfig) VALUES ('old', 'pull', $1)", document)
    [before] = await registry.pull_clusters(pool, kubeconfigs)
    assert before.kubeconfig is None
    assert before.kubeconfig_error == "the stored kubeconfig cannot be used: stored in clear text, not sealed"
    async with pool.acquire() as conn:
        assert (await registry.prepare_kubeconfigs(conn, kubeconfigs)).resealed == ["old"]
        assert (await registry.prepare_kubeconfigs(conn, kubeconfigs)).resealed == []
    assert (await stored(pool, "old")).startswith("kpenc1:")
    [after] = await registry.pull_clusters(pool, kubeconfigs)
    assert after.kubeconfig == document and "kubesim-token" not in repr(after)


async def test_a_key_file_that_opens_nothing_is_refused_at_start(pool: asyncpg.Pool, key_file: Path,
                                                                 tmp_path: Path) -> None:
    sealed = SecretBox(key_file).seal("x", context="clusters/a/kubeconfig")
    await pool.execute("INSERT INTO clusters (name, mode, kubeconfig) VALUES ('a', 'pull', $1)", sealed)
    other = tmp_path / "other.keys"
    secretbox.create_key_file(other)
    async with pool.acquire() as conn:
        with pytest.raises(KeyFileError, match="opens none of the stored kubeconfigs"):
            await registry.prepare_kubeconfigs(conn, Kubeconfigs(box=SecretBox(other)))


async def test_serve_seals_clear_rows(tmp_path: Path, db_url: str, pool: asyncpg.Pool) -> None:
    document = yaml.safe_dump(sim_kubeconfig("http://127.0.0.1:9"))
    await pool.execute("INSERT INTO clusters (name, mode, kubeconfig) VALUES ('old', 'pull', $1)", document)
    server = await start_server(tmp_path, "syncer", database_url=db_url)
    async with cleanup(server.proc):
        key_file = server.data_dir / secretbox.KEY_FILE_NAME
        assert (await stored(pool, "old")).startswith(f"kpenc1:{SecretBox(key_file).key_ids[0]}:")


@pytest.mark.parametrize("unsafe", ["mode", "symlink"])
async def test_serve_refuses_an_unsafe_key_file(tmp_path: Path, unsafe: str) -> None:
    data_dir = tmp_path / "data"
    key_file = data_dir / secretbox.KEY_FILE_NAME
    if unsafe == "mode":
        secretbox.create_key_file(key_file)
        key_file.chmod(0o640)
        expected = (f"kubepedia: refusing key file {key_file}: mode 0640 lets group or others at it; "
                    f"run `chmod 600 {key_file}`")
    else:
        secretbox.create_key_file(tmp_path / "real.keys")
        data_dir.mkdir()
        key_file.symlink_to(tmp_path / "real.keys")
        expected = (f"kubepedia: refusing key file {key_file}: it is a symbolic link; replace it with "
                    "the file itself (`mv` the target there) or remove it")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubepedia", "--log-level", "error", "serve", "--data-dir", str(data_dir),
        "--ingest-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBEPEDIA_DATABASE_URL": ""})
    _, err = await proc.communicate()
    assert proc.returncode == 1
    assert err.decode().splitlines() == [expected]
    assert not (data_dir / "pgdata").exists()  # refused before anything started


async def test_keys_without_a_database_is_one_line(tmp_path: Path) -> None:
    secretbox.create_key_file(tmp_path / secretbox.KEY_FILE_NAME)
    code, out, err = await keys_command("--data-dir", str(tmp_path), "rotate")
    assert (code, out) == (1, "")
    assert err == (f"kubepedia: no embedded PostgreSQL in {tmp_path}: pass the server's --data-dir or "
                   "--database-url\n")
    assert len(SecretBox(tmp_path / secretbox.KEY_FILE_NAME).key_ids) == 1  # nothing was added


async def test_rotation_names_what_it_cannot_reseal(pool: asyncpg.Pool, db_url: str, key_file: Path) -> None:
    box = SecretBox(key_file)
    for name in ("good", "bad"):
        await pool.execute("INSERT INTO clusters (name, mode, kubeconfig) VALUES ($1, 'pull', $2)",
                           name, box.seal("doc", context=f"clusters/{name}/kubeconfig"))
    await pool.execute("UPDATE clusters SET kubeconfig = (SELECT kubeconfig FROM clusters"
                       " WHERE name = 'good') WHERE name = 'bad'")
    where = ("--database-url", db_url, "--secret-key-file", str(key_file))
    code, out, err = await keys_command(*where, "rotate")
    assert code == 1
    assert out.startswith(f"key {box.key_ids[-1]} added; 1 stored kubeconfig(s) re-sealed with it\n")
    assert err == ("kubepedia: cluster bad: the stored kubeconfig cannot be used: does not open with key "
                   f"{box.key_ids[0]}: altered, or sealed for another place\n")
    assert secretbox.key_id_of(await stored(pool, "good")) == box.key_ids[-1]
