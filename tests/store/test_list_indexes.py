"""The indexes of the read API serve its pages in list order, without sorting.

At a million objects the benchmark (``benchmarks.api``) reports the plans PostgreSQL
picks; here, on a small table where the planner would rightly pick a scan, scans are
priced out so that the plan shows what the indexes *can* do: read a page in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio

from apiserver.query import EVERYTHING_SCOPE, Target, compiled, list_statement, remaining_statement
from kube.selectors import parse_field_selector, parse_label_selector
from syncer.ingest import Store
from tests.factories import PODS, event, pod

POD_TARGET = Target(group="", version="v1", resource="pods", kind="Pod")


def _nodes(plan: dict[str, Any]) -> list[str]:
    here = f"{plan['Node Type']} {plan.get('Index Name', '')}".strip()
    return [here] + [n for child in plan.get("Plans", []) for n in _nodes(child)]


async def _plan(conn: asyncpg.Connection, target: Target, **kwargs: Any) -> list[str]:
    sql, params = compiled(list_statement(target, EVERYTHING_SCOPE, limit=501, **kwargs))
    found = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *params)
    return _nodes(found[0]["Plan"])


def _on_node(obj: dict[str, Any], node: str) -> dict[str, Any]:
    obj["spec"]["nodeName"] = node
    return obj


@pytest_asyncio.fixture
async def priced_out(store: Store, pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """300 pods in each of two clusters, and a connection, in a transaction, on which the
    planner takes an index wherever one can serve the query: what the plan of the small
    table shows of a large one's."""
    for cluster in ("c1", "c2"):
        await store.apply_batch(cluster=cluster, rtype=PODS, events=[
            event("ADDED", _on_node(pod(f"p{i}", i + 1), f"n{i % 3}")) for i in range(300)])
    await pool.execute("VACUUM ANALYZE resources")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        await conn.execute("SET LOCAL enable_bitmapscan = off")
        yield conn


async def test_field_selected_pages_are_read_in_order(priced_out: asyncpg.Connection) -> None:
    for selector, index in (("spec.nodeName=n1", "resources_field_node_name"),
                            ("status.phase=Running", "resources_field_phase")):
        target = Target(group="", version="v1", resource="pods", kind="Pod",
                        fields=parse_field_selector(selector, "Pod"))
        nodes = await _plan(priced_out, target)
        assert any(index in n for n in nodes), nodes
        assert not any(n.startswith("Sort") or "Incremental Sort" in n for n in nodes), nodes
        nodes = await _plan(priced_out, target, after=("default", "p5", "c1"))
        assert not any("Sort" in n for n in nodes), nodes


async def test_pages_of_a_common_label_are_read_in_order(priced_out: asyncpg.Connection) -> None:
    for selector, index in (("app=p1", "resources_label_app"),
                            ("app.kubernetes.io/name=web", "resources_label_app_name")):
        target = Target(group="", version="v1", resource="pods", kind="Pod",
                        labels=parse_label_selector(selector))
        nodes = await _plan(priced_out, target)
        assert any(index in n for n in nodes), nodes
        assert not any("Sort" in n for n in nodes), nodes


async def test_what_is_left_of_a_list_is_counted_from_the_index_alone(priced_out: asyncpg.Connection) -> None:
    statement = remaining_statement(POD_TARGET, EVERYTHING_SCOPE, after=("default", "p5", "c1"),
                                    cap=10_000)
    sql, params = compiled(statement)
    found = await priced_out.fetchval("EXPLAIN (FORMAT JSON) " + sql, *params)
    nodes = _nodes(found[0]["Plan"])
    assert any(n.startswith("Index Only Scan") for n in nodes), nodes
