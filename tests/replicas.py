"""A primary and a hot standby from the embedded PostgreSQL's binaries, for tests of the
read API on replicas (docs/replicas.md)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from syncer import embedded
from tests.conftest import service_tempdir


@dataclass(frozen=True, slots=True)
class Pair:
    primary: str  # URLs of the kubepedia database on each
    standby: str


def _base_backup(primary: embedded.EmbeddedPostgres, standby: embedded.EmbeddedPostgres) -> None:
    """``pg_basebackup -R`` of the primary into the standby's (empty) pgdata, as the server's
    user; -R writes standby.signal and the primary's conninfo, password included."""
    user = embedded._run_as()
    standby.data_dir.mkdir(mode=0o711, exist_ok=True)
    standby.pgdata.mkdir(mode=0o700)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(standby.pgdata, entry.pw_uid, entry.pw_gid)
    conninfo = (f"host=127.0.0.1 port={primary.port()} user={embedded.SUPERUSER} "
                f"password={primary.password()}")
    embedded._check([str(embedded._bin("pg_basebackup")), "-R", "-X", "stream", "-c", "fast",
                     "-D", str(standby.pgdata), "-d", conninfo], user=user, what="base backup")
    shutil.copy2(primary.password_file, standby.password_file)


@contextlib.contextmanager
def primary_and_standby() -> Iterator[Pair]:
    if not embedded._bin("pg_basebackup").exists():
        pytest.skip("pg_basebackup is not among the embedded PostgreSQL's binaries")
    with (service_tempdir("kubepedia-test-primary-") as p_dir,
          service_tempdir("kubepedia-test-standby-") as s_dir):
        primary = embedded.EmbeddedPostgres(data_dir=p_dir)
        standby = embedded.EmbeddedPostgres(data_dir=s_dir / "standby")
        embedded.start(primary)
        try:
            _base_backup(primary, standby)
            embedded.start(standby)  # hot_standby is on by default: it answers reads
            try:
                yield Pair(primary=primary.url, standby=standby.url)
            finally:
                embedded.stop(standby, mode="immediate")
        finally:
            embedded.stop(primary, mode="immediate")
