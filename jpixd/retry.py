"""One retry policy for every loop and client (issue 24, part 5): exponential backoff
with "equal jitter", drawn from a random source the caller owns (tests give a seeded one).

Retry n (1 for the first) waits half to all of `first × 2^(n-1)`, never more than `cap`:
the doubling spreads a peer's recovery out, the jitter keeps several hosts (or sources,
or mails) from retrying in step, and the cap keeps a loop that waits out an outage
within its staleness (readiness and the watchdog see it degraded, not wedged). Pure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    first: float  # seconds: the longest wait before the first retry
    cap: float  # seconds: the longest wait at all

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after `failures` failures in a row (0 after none)."""
        if failures < 1:
            return 0.0
        whole = min(self.first * 2.0 ** min(failures - 1, 60), self.cap)
        return whole * rng.uniform(0.5, 1.0)
