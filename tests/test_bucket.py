"""The token bucket on a virtual clock: the rate holds, no second exceeds rate + burst,
throttling halves the rate and it comes back."""

from __future__ import annotations

import pytest

from jpixd.mail.bucket import FLOOR, TokenBucket


class VirtualClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


async def test_rate_and_windows_on_a_virtual_clock() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(50.0, monotonic=clock.monotonic, sleep=clock.sleep)
    start = clock.t
    stamps = []
    for _ in range(1500):
        await bucket.acquire()
        stamps.append(clock.t - start)
    achieved = len(stamps) / stamps[-1]
    assert achieved == pytest.approx(50.0, rel=0.02)
    worst = max(sum(1 for s in stamps if w <= s < w + 1) for w in range(int(stamps[-1])))
    assert worst <= 50 + bucket.burst


async def test_throttling_halves_and_recovers() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(14.0, monotonic=clock.monotonic, sleep=clock.sleep)
    bucket.penalize()
    assert bucket.rate == 7.0
    for _ in range(30):
        bucket.penalize()
    assert bucket.rate == FLOOR
    for _ in range(200):
        await bucket.acquire()
    assert bucket.rate is not None and bucket.rate > FLOOR  # coming back as time passes
    clock.t += 600
    await bucket.acquire()
    assert bucket.rate == pytest.approx(14.0, rel=0.01)


async def test_a_new_quota_does_not_undo_recent_throttling() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(14.0, monotonic=clock.monotonic, sleep=clock.sleep)
    bucket.penalize()
    bucket.set_rate(20.0)
    assert bucket.rate == 7.0 and bucket.target == 20.0
    clock.t += 61
    bucket.set_rate(20.0)
    assert bucket.rate == 20.0


async def test_unlimited() -> None:
    clock = VirtualClock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await clock.sleep(seconds)

    bucket = TokenBucket(None, monotonic=clock.monotonic, sleep=sleep)
    for _ in range(10_000):
        await bucket.acquire()
    assert slept == []  # no rate: never a wait
    bucket.set_rate(5.0)
    for _ in range(bucket.burst + 1):
        await bucket.acquire()
    assert slept  # with a rate, the token after the burst waits
