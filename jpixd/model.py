"""The domain: plain dataclasses and enums shared by the loops and the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

JST = ZoneInfo("Asia/Tokyo")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    SKIPPED = "skipped"


class NoticeKind(StrEnum):
    CONSTRUCTION = "construction"
    FAILURE = "failure"


class NoticeStatus(StrEnum):
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    OCCURRED = "occurred"
    RECOVERED = "recovered"


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    SUPPRESSED = "suppressed"
    UNSUBSCRIBED = "unsubscribed"


@dataclass(frozen=True)
class SendingState:
    """Whether the sender may claim work, and why not.

    `window_start` is when the bounce-rate guard starts counting: a resume moves it to
    the resume time, so the events that tripped the guard do not trip it again.
    """

    paused: bool
    reason: str | None = None
    actor: str | None = None  # "admin", "guard", "ses"
    since: datetime | None = None
    window_start: datetime | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "paused": self.paused,
            "reason": self.reason,
            "actor": self.actor,
            "since": self.since.isoformat() if self.since else None,
            "window_start": self.window_start.isoformat() if self.window_start else None,
        }
