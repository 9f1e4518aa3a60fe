"""Does the store hold exactly what each member cluster holds?

The comparison of the store with kubesim clusters, object by object, shared by the sync
tests (``tests.convergence``) and the soak benchmark: every object a kubesim cluster
serves (its ``/_kubesim/dump``, less the types kubepedia does not sync by default) must
be in ``resources`` with the same type, namespace, name, uid and resourceVersion, and
nothing else may be there. Benchmarks may import everything and tests may import
benchmarks, so this lives here rather than in ``tests/``; kubesim cannot hold it (it
imports nothing of the project, and this reads the store).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from agent.discovery import DEFAULT_EXCLUDED
from kube.resources import type_key

Identity = tuple[str, str, str, str, str, str]  # group, resource, namespace, name, uid, rv
Key = tuple[str, str, str, str]  # group, resource, namespace, name


@dataclass(frozen=True, kw_only=True)
class Divergence:
    """How a store differs from a cluster, object by object.

    ``stale``: the object is in both but not as the same version (another uid: deleted
    and made again under the same name, or another resourceVersion); ``missing`` and
    ``extra``: in only one of the two."""

    missing: set[Identity] = field(default_factory=set)
    extra: set[Identity] = field(default_factory=set)
    stale: set[tuple[Identity, Identity]] = field(default_factory=set)  # (cluster's, store's)

    @property
    def count(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.stale)

    def describe(self) -> str:
        return (f"{len(self.missing)} missing (e.g. {sorted(self.missing)[:3]}),"
                f" {len(self.extra)} extra (e.g. {sorted(self.extra)[:3]}),"
                f" {len(self.stale)} stale (e.g. {sorted(self.stale)[:3]})")


def _by_key(identities: Iterable[Identity]) -> dict[Key, Identity]:
    return {i[:4]: i for i in identities}


def divergence(want: set[Identity], have: set[Identity]) -> Divergence:
    """Compare what a cluster holds (``want``) with what the store holds (``have``)."""
    wanted, held = _by_key(want - have), _by_key(have - want)
    both = wanted.keys() & held.keys()
    return Divergence(missing={wanted[k] for k in wanted.keys() - both},
                      extra={held[k] for k in held.keys() - both},
                      stale={(wanted[k], held[k]) for k in both})


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


async def compare(pool: asyncpg.Pool, cluster: str, url: str) -> Divergence:
    return divergence(await cluster_state(url), await store_state(pool, cluster))


async def converge(pool: asyncpg.Pool, cluster: str, url: str, *, within: float) -> Divergence:
    """Wait up to ``within`` seconds for the store to equal the cluster; the divergence
    left (empty once they are equal)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        found = await compare(pool, cluster, url)
        if not found.count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.25)
