"""Injected faults: failing, stalling and dropping requests on demand.

These are not Kubernetes behaviour; they let tests drive a client through the
failures a real control plane shows (5xx, 429 with Retry-After, hangs).
"""

from __future__ import annotations

import asyncio
import time

from kubesim.errors import StatusError

CONTROL_PREFIX = "/_kubesim/"


class Faults:
    def __init__(self) -> None:
        self.fail_remaining = 0
        self.fail_code = 500
        self.retry_after = 1
        self.stalled_until = 0.0

    def fail_next(self, count: int, code: int, retry_after: int = 1) -> None:
        self.fail_remaining = count
        self.fail_code = code
        self.retry_after = retry_after

    def stall(self, seconds: float) -> None:
        self.stalled_until = time.monotonic() + seconds

    async def gate(self) -> None:
        """Hold the caller while a stall is in effect."""
        # A stall may be extended while we wait, so re-check after each sleep.
        while (left := self.stalled_until - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(left, 0.5))

    def take_failure(self) -> StatusError | None:
        if self.fail_remaining <= 0:
            return None
        self.fail_remaining -= 1
        return injected(self.fail_code, self.retry_after)


def injected(code: int, retry_after: int) -> StatusError:
    if code == 429:
        return StatusError(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
            {"retryAfterSeconds": retry_after},
            {"Retry-After": str(retry_after)},
        )
    if code == 503:
        return StatusError(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
            {"retryAfterSeconds": retry_after},
            {"Retry-After": str(retry_after)},
        )
    if code == 504:
        return StatusError(504, "Timeout", "the server was unable to return a response in time")
    return StatusError(code, "InternalError", "Internal error occurred: injected failure")
