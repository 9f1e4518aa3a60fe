"""Two ``kubepedia serve`` processes share a database: each pull cluster has one owner.

The owner holds an advisory lock on a dedicated connection. When that connection dies
while the process lives (here: ``pg_terminate_backend``), the ``Owner`` guard in every
write transaction stops the old owner at once; it lets the cluster go and pauses before
trying to own it again, and the healthy peer takes it over.

Who wrote what is observed in the database itself: statement triggers that the test adds
to the store's tables record each writing transaction's ``application_name`` (pull
connections carry their process's pid) and start time.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from syncer.ingest import advisory_holder
from syncer.pull import POLL_ENV, ownership_key
from tests.convergence import wait_converged
from tests.e2e.procs import Proc, Server, cleanup, register, start_server, start_sim

DEADLINE_S = 90.0  # for conditions that come within a few polls; only a failure waits this long
WRITTEN_TABLES = ("resources", "change_log", "sync_state", "snapshots", "snapshot_seen")
RECORD_WRITERS = """
CREATE TABLE test_writes (app text NOT NULL, xact_start timestamptz NOT NULL, tbl text NOT NULL);
CREATE FUNCTION test_note_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO test_writes VALUES (current_setting('application_name'), now(), TG_TABLE_NAME);
    RETURN NULL;
END $$;
"""


async def record_writers(pool: asyncpg.Pool) -> None:
    """Note every statement that writes the store, by whom and in which transaction."""
    await pool.execute(RECORD_WRITERS)
    for table in WRITTEN_TABLES:
        await pool.execute(f"CREATE TRIGGER test_note_write AFTER INSERT OR UPDATE OR DELETE ON {table}"
                           " FOR EACH STATEMENT EXECUTE FUNCTION test_note_write()")


def pid_of(server: Server) -> int:
    assert server.proc.proc is not None
    return server.proc.proc.pid


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"no {what} within {DEADLINE_S}s"
        await asyncio.sleep(0.2)


async def owner_pid(pool: asyncpg.Pool, key: int) -> int | None:
    """The OS pid of the kubepedia process holding a pull cluster (from its connection's name)."""
    backend = await advisory_holder(pool, key)
    if backend is None:
        return None
    name = await pool.fetchval("SELECT application_name FROM pg_stat_activity WHERE pid = $1", backend)
    return int(name.rsplit(":", 1)[1]) if name else None


def logged(proc: Proc, pattern: str) -> bool:
    return re.search(pattern, proc.run_output()) is not None


async def test_owner_that_loses_its_lock_writes_nothing_more(
        tmp_path: Path, db_url: str, pool: asyncpg.Pool) -> None:
    await record_writers(pool)
    sim = await start_sim(tmp_path, "pulled", generate="namespaces=2,pods=30,configmaps=10", seed=3)
    async with cleanup(sim.proc) as procs:
        # Servers sharing a database share the key file that seals kubeconfigs (one data dir).
        shared = tmp_path / "shared-data"
        # The first owner checks its lock connection only every 10 minutes: right after the
        # loss, nothing but the guard in its write transactions can stop its writes.
        old = await start_server(tmp_path, "syncer-old", database_url=db_url, data_dir=shared,
                                 env={POLL_ENV: "600"})
        procs.append(old.proc)
        await register(old, "pulled", kubeconfig=sim.kubeconfig)  # reconciled at once
        await wait_converged(pool, "pulled", sim.url)
        key = ownership_key("pulled")
        assert await owner_pid(pool, key) == pid_of(old)
        peer = await start_server(tmp_path, "syncer-peer", database_url=db_url, data_dir=shared,
                                  env={POLL_ENV: "3"})
        procs.append(peer.proc)

        lock_backend = await pool.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            f"kubepedia-pull {socket.gethostname()}:{pid_of(old)}")
        assert lock_backend == await advisory_holder(pool, key)
        assert await pool.fetchval("SELECT pg_terminate_backend($1, 30000)", lock_backend)
        lost_at = await pool.fetchval("SELECT clock_timestamp()")
        # Changes the old owner's informers see at once, well before the peer's next poll.
        for i in range(3):
            await sim.request("POST", "/api/v1/namespaces/default/configmaps",
                              {"metadata": {"name": f"after-loss-{i}"}, "data": {"k": "v"}})

        async def peer_owns() -> bool:
            return await owner_pid(pool, key) == pid_of(peer)

        async def old_writes() -> list[asyncpg.Record]:
            return await pool.fetch(
                "SELECT tbl, xact_start FROM test_writes WHERE app LIKE $1 AND xact_start > $2",
                f"%:{pid_of(old)}", lost_at)

        async def refused_or_wrote() -> bool:
            return logged(old.proc, "write refused .*ownership lock") or bool(await old_writes())

        await until(refused_or_wrote, "write attempt by the old owner")
        await until(peer_owns, "takeover by the peer")
        assert await old_writes() == [], "the owner that lost its lock went on writing"
        await wait_converged(pool, "pulled", sim.url)
        assert logged(old.proc, r"pull cluster released cluster=pulled reason=\"ownership connection lost\"")
        assert await old_writes() == []
        assert await pool.fetchval("SELECT count(*) FROM test_writes WHERE app LIKE $1 AND xact_start > $2",
                                   f"%:{pid_of(peer)}", lost_at) > 0, "the peer's writes are seen"
        assert await peer_owns(), "the old owner did not take the cluster back"


async def test_two_syncers_one_owner_and_takeover(tmp_path: Path, db_url: str, pool: asyncpg.Pool) -> None:
    sim = await start_sim(tmp_path, "pulled", generate="namespaces=2,pods=30", seed=2)
    async with cleanup(sim.proc) as procs:
        shared = tmp_path / "shared-data"  # one key file for the kubeconfigs both may open
        a = await start_server(tmp_path, "syncer-a", database_url=db_url, data_dir=shared)
        procs.append(a.proc)
        b = await start_server(tmp_path, "syncer-b", database_url=db_url, data_dir=shared)
        procs.append(b.proc)
        await register(a, "pulled", kubeconfig=sim.kubeconfig)
        await wait_converged(pool, "pulled", sim.url)
        key = ownership_key("pulled")
        owner = await owner_pid(pool, key)
        pids = {pid_of(a): a, pid_of(b): b}
        assert owner in pids, f"lock held by {owner}, not one of {sorted(pids)}"
        holders = await pool.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND objid = ($1::bigint & 4294967295)::oid", key)
        assert holders == 1
        survivor = b if pids[owner] is a else a
        await pids[owner].proc.stop(signal.SIGKILL)

        async def survivor_owns() -> bool:
            return await owner_pid(pool, key) == pid_of(survivor)

        await until(survivor_owns, "takeover after the owner was killed")
        await sim.request("POST", "/api/v1/namespaces/default/configmaps",
                          {"metadata": {"name": "after-takeover"}, "data": {"k": "v"}})
        await wait_converged(pool, "pulled", sim.url)
