"""The soak benchmark's accounting, kept pure so that it can be tested without a run.

Watches. A watcher is checked against the change log, not against what other watchers
saw. It keeps a position: the resourceVersion (change-log sequence) of the last event or
bookmark it got; after any disconnect it watches again from there. It therefore claims to
have seen every change of its scope in (start, position]; a *span* is such an interval.
A span starts at the resourceVersion of a list (the first one, or a relist) and ends
when the watcher stops, or when a watch from its position answers 410 Gone: the watcher
then lists again and starts a new span at the new list's resourceVersion. The changes
between the two spans are not owed as events (the relist holds their result, as a
Kubernetes client's relist does). ``missed`` counts the changes of the scope inside the
spans that the watcher never got; ``duplicated`` the events it got twice (a resume from
the position must not repeat one).

Errors. A request is a read that got an answer (its HTTP status) or none (status 0: the
connection failed, as while the server restarts). 5xx answers that overlap a window in
which PostgreSQL was down (plus a grace period for pools to reconnect) are excused and
counted apart; so are connection failures while the server itself was down.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Span = tuple[int, int]  # (after, upto]: sequences a watcher owes events for
Window = tuple[float, float]  # monotonic seconds, start and end
Read = tuple[float, float, int]  # monotonic start, end, HTTP status (0: no answer)


def in_spans(seq: int, spans: Sequence[Span]) -> bool:
    return any(after < seq <= upto for after, upto in spans)


@dataclass(frozen=True, kw_only=True)
class WatchCheck:
    expected: int
    missed: int
    duplicated: int
    unexpected: int  # events outside every span or not in the change log of the scope


def check_watch(*, changes: Iterable[int], spans: Sequence[Span], seen: Sequence[int]) -> WatchCheck:
    """``changes``: the change-log sequences of the watcher's scope from its first span's
    start to its last span's end; ``seen``: the sequences of the events it got."""
    owed = {seq for seq in changes if in_spans(seq, spans)}
    got = set(seen)
    return WatchCheck(expected=len(owed), missed=len(owed - got), duplicated=len(seen) - len(got),
                      unexpected=len(got - owed))


def overlaps(start: float, end: float, windows: Sequence[Window], grace: float) -> bool:
    return any(start <= w_end + grace and end >= w_start for w_start, w_end in windows)


@dataclass(frozen=True, kw_only=True)
class ReadFigures:
    served: int  # answered 2xx
    errors_5xx: int  # outside the excused windows
    errors_5xx_pg_down: int
    errors_4xx: int
    no_answer: int  # connection failed outside the server's down windows
    no_answer_server_down: int


def classify_reads(reads: Iterable[Read], *, pg_down: Sequence[Window], server_down: Sequence[Window],
                   grace: float) -> ReadFigures:
    counts = dict.fromkeys(("served", "e5", "e5pg", "e4", "none", "none_down"), 0)
    for start, end, status in reads:
        if 200 <= status < 300:
            key = "served"
        elif status >= 500:
            key = "e5pg" if overlaps(start, end, pg_down, grace) else "e5"
        elif status >= 400:
            key = "e4"
        else:
            key = "none_down" if overlaps(start, end, server_down, grace) else "none"
        counts[key] += 1
    return ReadFigures(served=counts["served"], errors_5xx=counts["e5"], errors_5xx_pg_down=counts["e5pg"],
                       errors_4xx=counts["e4"], no_answer=counts["none"],
                       no_answer_server_down=counts["none_down"])


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-quantile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
