"""stop_tasks: cancels, waits for the tasks' cleanup, and names the ones that would not stop."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from kube.tasks import stop_tasks

log = logging.getLogger("test.tasks")


async def test_waits_for_cleanup_that_takes_time() -> None:
    cleaned = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.2)  # e.g. closing a connection
            cleaned.set()

    task = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)  # let it start
    await stop_tasks([task], timeout=5, log=log)
    assert cleaned.is_set() and task.cancelled()


async def test_names_a_task_that_ignores_cancellation_and_returns_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # swallowed: the bug stop_tasks must make visible

    task = asyncio.create_task(stubborn(), name="stubborn worker")
    polite = asyncio.create_task(asyncio.sleep(3600), name="polite worker")
    await asyncio.sleep(0)
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger=log.name):
            # Bounded from outside too: a stop_tasks that waited for ever fails here, not at
            # the suite's timeout.
            await asyncio.wait_for(stop_tasks([task, polite], timeout=0.2, log=log), 5)
        elapsed = time.monotonic() - started
        assert 0.2 <= elapsed < 2
        assert not task.done() and polite.cancelled()
        stuck = [r for r in caplog.records if r.name == log.name]
        assert [getattr(r, "task", None) for r in stuck] == ["stubborn worker"]
        assert stuck[0].levelno == logging.WARNING
    finally:
        release.set()
        await task


async def test_nothing_to_stop_and_tasks_already_done(caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        raise RuntimeError("ended badly before being stopped")

    failed = asyncio.create_task(fails())
    finished = asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    with caplog.at_level(logging.WARNING, logger=log.name):
        await stop_tasks([], timeout=1, log=log)
        await stop_tasks([failed, finished], timeout=1, log=log)
    assert failed.done() and finished.done()
    assert not [r for r in caplog.records if r.name == log.name]
