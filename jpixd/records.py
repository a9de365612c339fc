"""What the store hands back: records of what it did or what it holds, used by the
loops that asked (the domain's own types live in jpixd.model). Kept out of `store/`, so
that no loop imports a store module for a type."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the bounce parser imports the subscribers' rules, which use Channel
    from jpixd.bounces.parse import MailEvent


@dataclass(frozen=True)
class RecordResult:
    notice_id: int
    revision_id: int
    deliveries: int
    reminders: int
    superseded: int
    reminders_cancelled: int


@dataclass(frozen=True)
class EventOutcome:
    event: MailEvent
    new: bool  # False: seen before (a redelivered notification)
    delivery_id: int | None = None
    suppressed: bool = False  # this event suppressed its address now
    reason: str | None = None


@dataclass(frozen=True)
class SelfMail:
    """A self-service mail claimed for sending."""

    id: int
    kind: str  # "confirm" or "manage"
    subscriber_id: int
    email: str
    attempts: int  # this one included


@dataclass(frozen=True)
class Ticket:
    id: int
    kind: str  # "bounce" | "guard"
    email: str | None
    marker: str
    state: str  # intent → open → closing → closed, or gone (deleted in Backlog)
    issue_id: int | None
    issue_key: str | None
    summary: str
    description: str
    priority: str  # "normal" | "high"
    close_reason: str | None
    attempted_at: datetime | None
    last_error: str | None
    tries: int
    next_try_at: datetime | None
    last_event_at: datetime | None
    created_at: datetime
    opened_at: datetime | None
    closed_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None
        return {"id": self.id, "kind": self.kind, "email": self.email, "state": self.state,
                "issue_key": self.issue_key, "issue_id": self.issue_id,
                "summary": self.summary, "priority": self.priority,
                "close_reason": self.close_reason, "last_error": self.last_error,
                "tries": self.tries, "next_try_at": iso(self.next_try_at),
                "last_event_at": iso(self.last_event_at), "created_at": iso(self.created_at),
                "opened_at": iso(self.opened_at), "closed_at": iso(self.closed_at)}


@dataclass(frozen=True)
class TicketComment:
    id: int
    ticket_id: int
    issue_id: int
    content: str
    marker: str | None  # set with attempted_at: the comment may be in Backlog already
    attempted_at: datetime | None


@dataclass(frozen=True)
class Pruned:
    counts: dict[str, int]


@dataclass(frozen=True)
class Channel:
    """A subscriber's channel besides mail (issue 26). `url` and `secret` are secrets:
    what a person is shown is `shown_url` (jpixd.channels.urls.shown)."""

    id: int
    subscriber_id: int
    kind: str  # "webhook" | "slack" | "teams"
    url: str
    secret: str  # the key (its UTF-8 bytes) that signs its webhook messages
    state: str  # "verifying" | "active" | "paused" | "removed"
    paused_reason: str | None
    gone_count: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    verified_at: datetime | None


@dataclass(frozen=True)
class ChannelMessage:
    """A channel message claimed for sending, with what its channel is now."""

    id: int
    channel: Channel
    purpose: str  # "notice" | "test"
    notice_id: int | None
    attempts: int  # this one included
    change: str | None  # the revision's change ("new", "update", …), for a notice
    content: str | None  # the revision's notice as JSON, for a notice


@dataclass(frozen=True)
class ImportDiff:
    """One difference a subscriber import makes (or, in a dry run, would make). The CLI
    prints `str()`, the English line; the console says it in Japanese from the fields
    (`jpixd.web.words.import_diff_in_words`), so nobody parses the English back."""

    email: str
    what: str  # "new", the subscriber field that changes, "channel added", "channel removed"
    before: Any = None  # the field's value as it is
    after: Any = None  # and as it becomes
    kind: str = ""  # the channel's kind (a channel's change)
    url: str = ""  # the channel's URL as shown (never whole)
    signing_key: str = ""  # a new webhook's key, said this once

    def __str__(self) -> str:
        if self.what == "new":
            return f"{self.email}: new"
        if self.kind:
            key = f" (signing key {self.signing_key})" if self.signing_key else ""
            return f"{self.email}: {self.what} {self.kind} {self.url}{key}"
        return f"{self.email}: {self.what} {_shown(self.before)} → {_shown(self.after)}"


def listed(values: tuple[Any, ...] | list[Any]) -> str:
    """A list setting as the CLI, a subscriber's history and the console write it:
    「13,27」, or 「(all)」 when empty (an empty list of prefectures or services is all)."""
    return ",".join(str(v) for v in values) or "(all)"


def _shown(value: Any) -> str:
    """A value as an import's line says it: a list as `listed` writes it (not a tuple's
    repr, 「('13',)」), an enum as its value ('active', not its repr), text quoted (so
    that a space at either end shows)."""
    if isinstance(value, tuple | list):
        return listed(value)
    return repr(value.value if isinstance(value, Enum) else value)
