"""Does the store hold exactly what a member cluster holds? (Used by sync tests; the
comparison itself is ``benchmarks._convergence``, shared with the soak benchmark.)"""

from __future__ import annotations

import asyncpg

from benchmarks._convergence import converge


async def wait_converged(pool: asyncpg.Pool, cluster: str, url: str, *, within: float = 60.0) -> None:
    """Wait until the store equals the cluster; fail with the difference otherwise."""
    found = await converge(pool, cluster, url, within=within)
    if found.count:
        raise AssertionError(f"{cluster}: store differs from the cluster after {within}s: {found.describe()}")
