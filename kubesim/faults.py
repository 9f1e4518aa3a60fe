"""Injected faults: failing, stalling and dropping requests on demand.

These are not Kubernetes behaviour; they let tests drive a client through the
failures a real control plane shows (5xx, 429 with Retry-After, hangs).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from kubesim.errors import StatusError

CONTROL_PREFIX = "/_kubesim/"


class Faults:
    def __init__(self) -> None:
        self.fail_remaining = 0
        self.fail_code = 500
        self.retry_after = 1
        self.stalled_until = 0.0
        # groupVersion ("v1", "apps/v1") -> the status its discovery document answers with,
        # like an aggregated API whose backend is down (kube-apiserver answers 503).
        self.discovery_down: dict[str, int] = {}
        self.discovery_failed: Counter[str] = Counter()  # failures answered, per groupVersion

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

    def fail_discovery(self, group_version: str, code: int) -> None:
        self.discovery_down[group_version] = code

    def heal_discovery(self, group_version: str | None = None) -> list[str]:
        """End discovery failures (one groupVersion's, or all); returns those ended."""
        ended = [gv for gv in self.discovery_down if group_version in (None, gv)]
        for gv in ended:
            del self.discovery_down[gv]
        return ended

    def discovery_failure(self, path: str) -> StatusError | None:
        """The failure for a discovery document's path (``/api/v1``, ``/apis/G/V``), if any.

        Only the discovery document fails; the group's resources stay reachable. That
        lets a test tell whether a client took "not answering" for "no longer served"
        (it would stop the types and delete their objects) while their data keeps flowing.
        """
        group_version = _discovery_group_version(path)
        code = self.discovery_down.get(group_version) if group_version else None
        if code is None or group_version is None:
            return None
        self.discovery_failed[group_version] += 1
        return injected(code, self.retry_after)

    def take_failure(self) -> StatusError | None:
        if self.fail_remaining <= 0:
            return None
        self.fail_remaining -= 1
        return injected(self.fail_code, self.retry_after)


def _discovery_group_version(path: str) -> str | None:
    parts = path.strip("/").split("/")
    if parts == ["api", "v1"]:
        return "v1"
    if len(parts) == 3 and parts[0] == "apis":
        return f"{parts[1]}/{parts[2]}"
    return None


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
