"""Does the store hold exactly what a member cluster holds? (Used by sync tests.)"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg

from agent.discovery import DEFAULT_EXCLUDED
from kube.resources import type_key

Identity = tuple[str, str, str, str, str, str]  # group, resource, namespace, name, uid, rv


async def cluster_state(url: str) -> set[Identity]:
    """Every synced object of a kubesim cluster, from its dump endpoint."""
    async with aiohttp.ClientSession() as session, session.get(url + "/_kubesim/dump") as resp:
        resp.raise_for_status()
        dump: dict[str, Any] = await resp.json()
    return {(o["group"], o["resource"], o["namespace"] or "", o["name"], o["uid"], o["resourceVersion"])
            for o in dump["objects"] if type_key(o["group"], o["resource"]) not in DEFAULT_EXCLUDED}


async def store_state(pool: asyncpg.Pool, cluster: str) -> set[Identity]:
    rows = await pool.fetch(
        "SELECT grp, resource, namespace, name, uid, resource_version FROM resources WHERE cluster = $1",
        cluster)
    return {(r["grp"], r["resource"], r["namespace"], r["name"], r["uid"], r["resource_version"])
            for r in rows}


async def difference(pool: asyncpg.Pool, cluster: str, url: str) -> tuple[set[Identity], set[Identity]]:
    """(missing from the store, extra in the store)."""
    want, have = await cluster_state(url), await store_state(pool, cluster)
    return want - have, have - want


async def wait_converged(pool: asyncpg.Pool, cluster: str, url: str, *, within: float = 60.0) -> None:
    """Wait until the store equals the cluster; fail with the difference otherwise."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        missing, extra = await difference(pool, cluster, url)
        if not missing and not extra:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"{cluster}: store differs from the cluster after {within}s:"
                f" {len(missing)} missing (e.g. {sorted(missing)[:3]}),"
                f" {len(extra)} extra (e.g. {sorted(extra)[:3]})")
        await asyncio.sleep(0.25)
