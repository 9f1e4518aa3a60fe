"""Stopping background tasks: cancel them, wait for them, say which would not stop.

Every room starts tasks it must end on shutdown or when their work is withdrawn (a
pipeline per resource type, a watch per namespace, a pulled cluster's runner, the change
feed's reader). Cancelling alone is not enough: the task's cleanup (closing a connection,
aborting an upload) runs only when it is next scheduled, and whoever stopped it usually
goes on to close what the task was using. Waiting without a limit is not enough either: a
task that swallows its cancellation, or whose cleanup hangs, would hold the shutdown open
for ever and silently. So: cancel, wait up to a timeout, and name each task that is still
running (kopf's ``aiotasks.stop`` does the same).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

# Enough for a cancelled task's own cleanup (a connection closed with its 2 s timeout, an
# HTTP request aborted, a nested stop_tasks); a task still running after this is stuck.
STOP_TIMEOUT_S = 10.0


# A timeout argument, not asyncio.timeout() around the call: running out of time is not an
# error for the caller, who goes on with its shutdown either way.
async def stop_tasks(
    tasks: Iterable[asyncio.Task[Any]], *, timeout: float, log: logging.Logger  # noqa: ASYNC109
) -> None:
    """Cancel ``tasks`` and wait up to ``timeout`` seconds for all of them to end; log a
    warning for each one still running then (it is left running).

    What the tasks ended with (a result, an exception, their cancellation) is not reported:
    the caller asked them to stop, and a task whose failure matters logs it itself. Their
    exceptions are retrieved so that asyncio does not report them as never retrieved. If the
    caller is cancelled while waiting, its cancellation propagates; the tasks stay cancelled.
    """
    pending = set(tasks)
    for task in pending:
        task.cancel()
    if not pending:
        return  # asyncio.wait refuses an empty set
    done, stuck = await asyncio.wait(pending, timeout=timeout)
    for task in done:
        if not task.cancelled():
            task.exception()  # marks it retrieved, as gather(return_exceptions=True) did
    for task in sorted(stuck, key=lambda t: t.get_name()):
        log.warning("task did not stop after being cancelled", extra={"task": task.get_name(),
                                                                       "timeout_s": timeout})
