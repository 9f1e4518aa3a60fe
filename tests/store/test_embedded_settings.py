"""The embedded PostgreSQL sizes its cache to the machine: a quarter of its memory, held
between 128 MB and 8 GB (``syncer.embedded.shared_buffers_mb``)."""

from __future__ import annotations

import os

import asyncpg
import pytest

from syncer.embedded import shared_buffers_mb


@pytest.mark.parametrize(("memory", "expected"), [
    (0, 128), (256 << 20, 128), (2 << 30, 512), (23 << 30, 23 * 256), (64 << 30, 8192), (1 << 50, 8192)])
def test_a_quarter_of_memory_within_bounds(memory: int, expected: int) -> None:
    assert shared_buffers_mb(memory) == expected


async def test_the_server_runs_with_it(pool: asyncpg.Pool) -> None:
    if os.environ.get("KUBEPEDIA_TEST_DOCKER") == "1":
        pytest.skip("a container's PostgreSQL has its own settings")
    shown = await pool.fetchval("SELECT setting::bigint * 8192 / 1048576 FROM pg_settings"
                                " WHERE name = 'shared_buffers'")
    assert shown == shared_buffers_mb()
