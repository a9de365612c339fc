"""One token bucket for all sends, on an injected clock.

Rate and burst come from the config or from SES (MaxSendRate × rate_safety). A throttled
send halves the rate (never below a floor); each second without throttling gives back
5 % of the way to the configured rate (additive-increase would take minutes at 14/s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

FLOOR = 0.2  # messages per second: slow, but never stopped by throttling alone


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class TokenBucket:
    def __init__(self, rate: float | None, burst: int | None = None, *,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = _sleep) -> None:
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = asyncio.Lock()
        # What the config or SES allows the account, and how many hosts share it
        # (several hosts on PostgreSQL: each takes its part, see jpixd.cluster).
        self.account: float | None = rate
        self.hosts = 1
        self.target: float | None = rate  # this host's part of the account's rate
        self.rate: float | None = rate  # what we use now (lower after throttling)
        self._burst_setting = burst
        self.burst = self._burst_for(rate)
        self.tokens = float(self.burst)
        self.last = monotonic()
        self.last_penalty = -1e9

    def _burst_for(self, rate: float | None) -> int:
        if self._burst_setting is not None:
            return self._burst_setting
        # Room for a little timer jitter, never more than a tenth of a second's worth.
        return max(2, int((rate or 0) / 10))

    def set_rate(self, rate: float | None) -> None:
        """A new allowed rate for the account (config, or a fresh SES quota)."""
        self.account = rate
        self._apply()

    def set_hosts(self, hosts: int) -> None:
        """How many hosts share the account's rate now."""
        self.hosts = max(hosts, 1)
        self._apply()

    def _apply(self) -> None:
        """This host's part of the account's rate. Within a minute of being throttled
        we stay at the lower of the old and the new."""
        rate = None if self.account is None else self.account / self.hosts
        self._refill()
        self.target = rate
        recently_throttled = self._monotonic() - self.last_penalty < 60
        if rate is None or self.rate is None or not recently_throttled:
            self.rate = rate
        else:
            self.rate = min(self.rate, rate)
        self.burst = self._burst_for(rate)
        self.tokens = min(self.tokens, float(self.burst))

    def penalize(self) -> None:
        """A throttling answer: halve the rate now."""
        self._refill()
        base = self.rate if self.rate is not None else 10.0
        self.rate = max(base / 2, FLOOR)
        self.last_penalty = self._monotonic()

    def _refill(self) -> None:
        now = self._monotonic()
        elapsed = max(now - self.last, 0.0)
        self.last = now
        if self.rate is None:
            self.tokens = float(self.burst)
            return
        if self.target is not None and self.rate < self.target and elapsed > 0:
            self.rate = min(self.target, self.rate + (self.target - self.rate) * 0.05 * elapsed)
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)

    async def acquire(self) -> None:
        """Wait for a token. FIFO under the lock, so waiting senders do not stampede."""
        async with self._lock:
            while True:
                self._refill()
                # The tolerance: sleeping exactly the computed time refills to 0.99999…,
                # and a follow-up sleep of 1e-15 s would not move a clock at all.
                if self.rate is None or self.tokens >= 1.0 - 1e-9:
                    self.tokens = max(self.tokens - 1.0, 0.0)
                    return
                await self._sleep((1.0 - self.tokens) / self.rate)
