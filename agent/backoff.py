"""Exponential backoff with full jitter for reconnect loops.

Many agents restarting at once (a syncer or apiserver outage ending) must not reconnect
in lockstep: "full jitter" picks a uniform delay in ``[0, min(cap, base * 2**n)]``
(https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/). A floor keeps
a hot loop from spinning when the random draw is near zero.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(kw_only=True)
class Backoff:
    """Delays for consecutive failures; ``reset()`` after a success."""

    base: float = 0.5
    cap: float = 30.0
    floor: float = 0.05
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.failures, 30)))
        self.failures += 1
        return max(self.floor, self.rng.uniform(0, ceiling))

    def reset(self) -> None:
        self.failures = 0
