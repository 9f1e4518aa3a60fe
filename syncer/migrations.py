"""Versioned schema migrations, applied at startup.

Each migration runs in one transaction under a transaction-level advisory lock, so two
processes starting at once apply it exactly once (the second waits, then finds it done),
and a failed migration leaves nothing behind. A database whose schema is newer than this
code is refused rather than written with assumptions that no longer hold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateSequence, CreateTable, DDLElement

from syncer import schema

log = logging.getLogger(__name__)

# Any constant unique to kubepedia; ownership locks use other key spaces.
MIGRATION_LOCK_KEY = schema.MIGRATION_LOCK


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer kubepedia."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Migration:
    version: int
    description: str
    statements: Callable[[], Sequence[str]]


def _compile(element: DDLElement) -> str:
    return str(element.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]


def _initial_schema() -> list[str]:
    statements = ["CREATE EXTENSION IF NOT EXISTS pg_trgm", _compile(CreateSequence(schema.change_seq))]
    for table in schema.metadata.sorted_tables:
        statements.append(_compile(CreateTable(table)))
        statements.extend(_compile(CreateIndex(index)) for index in sorted(table.indexes, key=str))
    return statements


MIGRATIONS: tuple[Migration, ...] = (
    Migration(version=1, description="initial schema", statements=_initial_schema),
)
LATEST = MIGRATIONS[-1].version


async def current_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))


async def migrate(conn: asyncpg.Connection) -> int:
    """Bring the schema to ``LATEST``; returns the version found before."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        found = await current_version(conn)
        if found > LATEST:
            raise SchemaTooNew(
                f"the database schema is version {found}, newer than this kubepedia "
                f"understands ({LATEST}); upgrade kubepedia or use another database"
            )
        for migration in MIGRATIONS:
            if migration.version > found:
                log.info("applying migration", extra={"version": migration.version,
                                                      "description": migration.description})
                for statement in migration.statements():
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)",
                                   migration.version)
    return found
