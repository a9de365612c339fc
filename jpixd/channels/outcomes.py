"""What becomes of a channel message after an attempt, or before one. Pure.

- Its channel was paused or removed since it was queued: skipped (a test message still
  goes to a paused channel: that is how someone checks a receiver is back).
- Sent (2xx): done.
- Retry (5xx, 429, a timeout, a connection refused): again after the backoff, or after
  the receiver's `Retry-After` when that is longer; failed once `max_attempts` are spent.
- Gone (404, 410): counted on the channel (the store pauses it at `pause_after_gone` in a
  row); until then retried as a temporary refusal, since a receiver being redeployed
  answers 404 for a minute.
- Failed (any other answer, an address not allowed): not retried.
A test message is tried once: the person who asked for it waits for the answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from jpixd.channels.post import Outcome
from jpixd.config import ChannelsConfig
from jpixd.retry import Backoff


@dataclass(frozen=True)
class Step:
    action: str  # "sent" | "retry" | "gone" | "failed"
    at: datetime | None = None  # when to try again (retry, gone)
    reason: str | None = None


def skip_reason(purpose: str, channel_state: str) -> str | None:
    """Why a claimed message is not sent at all, or None."""
    if channel_state == "removed":
        return "channel removed"
    if channel_state == "paused" and purpose != "test":
        return "channel paused"
    return None


def next_step(outcome: Outcome, *, purpose: str, attempts: int, cfg: ChannelsConfig,
              now: datetime, rng: random.Random) -> Step:
    """`attempts`: this one included."""
    error = outcome.error or outcome.result
    if outcome.result == "sent":
        return Step("sent")
    if outcome.result == "failed" or purpose == "test":
        return Step("gone" if outcome.result == "gone" else "failed", None, error)
    if attempts >= cfg.max_attempts:
        return Step("failed", None, f"gave up after {attempts} attempts: {error}")
    backoff = Backoff(cfg.backoff.total_seconds(), cfg.backoff_max.total_seconds())
    wait = max(backoff.delay(attempts, rng), outcome.retry_after or 0.0)
    return Step(outcome.result, now + timedelta(seconds=wait), error)
