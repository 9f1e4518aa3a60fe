"""The read API's limits, each answered with the code Kubernetes gives it:

- concurrent watches per subject: a watch beyond ``max_per_subject`` is refused before its
  response begins with 429 ``TooManyRequests`` and ``Retry-After`` (kube-apiserver's
  max-in-flight filter answers the same way); the slot is freed when the watch ends, however
  it ends (timeout, client gone, server shutdown);
- a statement timeout on every query of the API's pool (``statement_timeout``, see
  :func:`pool_settings`): a query cancelled by it answers 504 ``Timeout``, as kube-apiserver
  answers a request that did not complete in time (:func:`timed_out`);
- ``limit`` on lists is capped at :data:`apiserver.params.MAX_LIMIT` as Kubernetes allows
  (it never rejects a large limit; a page may hold fewer items, with a continue token).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from kube.status import StatusError

DEFAULT_MAX_WATCHES_PER_SUBJECT = 100
DEFAULT_READ_TIMEOUT_S = 30.0
RETRY_AFTER_S = 1
ANONYMOUS = "system:anonymous"


def subject_of(request: web.Request) -> str:
    """Whom a request counts against. Until access control authenticates callers, everyone
    is the one anonymous subject (so the bound is per process); access control makes this the
    authenticated subject. Not the peer address: behind Kubernetes' aggregation layer every
    request comes from the kube-apiserver, and a client's address says nothing of who it is."""
    del request
    return ANONYMOUS


@dataclass(kw_only=True)
class WatchSlots:
    """How many watches each subject has open in this process, bounded."""

    max_per_subject: int = DEFAULT_MAX_WATCHES_PER_SUBJECT
    _open: dict[str, int] = field(default_factory=dict)

    def open(self, subject: str) -> int:
        return self._open.get(subject, 0)

    @contextmanager
    def slot(self, subject: str) -> Iterator[None]:
        """One watch of ``subject`` for the block, or a 429 when it has all it may have."""
        held = self.open(subject)
        if held >= self.max_per_subject:
            raise StatusError(429, "TooManyRequests",
                              f"too many watches: {held} are open for this user, the limit is"
                              f" {self.max_per_subject}; retry when one ends",
                              {"retryAfterSeconds": RETRY_AFTER_S},
                              headers={"Retry-After": str(RETRY_AFTER_S)})
        self._open[subject] = held + 1
        try:
            yield
        finally:
            left = self._open[subject] - 1
            if left:
                self._open[subject] = left
            else:
                del self._open[subject]  # subjects come and go: keep only those with a watch open


def pool_settings(read_timeout_s: float) -> dict[str, str]:
    """Session settings of the API's pool: the statement timeout (whole milliseconds, at least
    one: PostgreSQL reads 0 as no timeout at all)."""
    return {"statement_timeout": str(max(1, round(read_timeout_s * 1000)))}


def timed_out() -> StatusError:
    """The answer to a query cancelled by the statement timeout."""
    return StatusError(504, "Timeout", "Timeout: request did not complete within the allotted timeout;"
                                       " narrow the query (a selector, a namespace, a limit) or retry",
                       {"retryAfterSeconds": RETRY_AFTER_S}, headers={"Retry-After": str(RETRY_AFTER_S)})
