"""Inspections over a real store and real HTTP: each check finds the problem made on purpose
and not its healthy twin; runs, history, formats and the reader's scope."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio

from apiserver.app import build_app
from apiserver.inspection_runs import run_requested
from apiserver.keys import SCOPE
from apiserver.query import Scope
from apiserver.query_inspections import CHECKS
from tests.apiserver.conftest import Api, serving
from tests.apiserver.inspecting import EXPECTED, fill_problems

PREFIX = "/kubepedia/v1/inspections"


@pytest_asyncio.fixture
async def problems(pool: asyncpg.Pool) -> None:
    await fill_problems(pool)


def _found(items: list[dict[str, Any]]) -> set[tuple[str, ...]]:
    return {(i["check"], i["cluster"], i["group"], i["resource"], i["namespace"], i["name"]) for i in items}


async def _run(api: Api) -> dict[str, Any]:
    status, body, _ = await api.request("POST", PREFIX + "/runs")
    assert status in (200, 201), body
    return dict(body)


async def test_each_check_finds_its_problem_and_no_healthy_object(api: Api, problems: None) -> None:
    await _run(api)
    status, body = await api.get(PREFIX + "/runs/latest")
    assert status == 200, body
    assert _found(body["items"]) == EXPECTED
    assert {c["name"] for c in body["checks"]} == set(CHECKS)
    assert all(c["more"] == 0 for c in body["checks"])
