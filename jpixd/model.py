"""The domain: plain dataclasses and enums shared by the loops and the store."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol
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
    SHADOW = "shadow"  # rendered and kept, not sent (`jpixd run --shadow`)


class NoticeKind(StrEnum):
    CONSTRUCTION = "construction"
    FAILURE = "failure"


class NoticeStatus(StrEnum):
    SCHEDULED = "scheduled"
    POSTPONED = "postponed"  # 延期: a new date may follow
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    OCCURRED = "occurred"
    PARTIALLY_RECOVERED = "partially_recovered"  # 「北海道エリアは回復しました。その他…」
    RECOVERED = "recovered"
    WITHDRAWN = "withdrawn"  # gone from its source without a word: never mailed as an end


# Statuses in which a notice still expects news from its source.
OPEN_STATUSES = frozenset({NoticeStatus.SCHEDULED, NoticeStatus.POSTPONED,
                           NoticeStatus.IN_PROGRESS, NoticeStatus.OCCURRED,
                           NoticeStatus.PARTIALLY_RECOVERED})


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


class Change(StrEnum):
    """What a notice revision means to a reader; drives the subject marker and whether
    anything is mailed at all."""

    NEW = "new"  # 【工事】/【故障】
    UPDATE = "update"  # 【更新】
    CANCEL = "cancel"  # 【中止】
    COMPLETE = "complete"  # 【完了】
    RECOVER = "recover"  # 【回復】
    REMINDER = "reminder"  # 【工事】 again, before the start
    WITHDRAW = "withdraw"  # it left its source without a word: shown to operators, not mailed
    RESTORE = "restore"  # a withdrawn notice is back as it was: reminders again, no mail
    SILENT = "silent"  # a revision that changes nothing a reader cares about
    BASELINE = "baseline"  # recorded at a first poll or cut-over, never mailed

    @property
    def mailed(self) -> bool:
        return self not in (Change.SILENT, Change.BASELINE, Change.WITHDRAW, Change.RESTORE)


class Window(StrEnum):
    """Delivery time bands in JST, as NTT West's 故障情報お知らせメール offers them."""

    DAY = "day"  # 昼間 08:00–19:00
    NIGHT = "night"  # 夜間 19:00–23:00
    LATE_NIGHT = "late_night"  # 深夜・早朝 23:00–08:00


ALL_CARRIERS: tuple[str, ...] = ("east", "west")
ALL_KINDS: tuple[str, ...] = ("construction", "failure")
ALL_WINDOWS: tuple[str, ...] = tuple(str(w) for w in Window)


@dataclass(frozen=True)
class TimeWindow:
    """One planned window of a notice (a night of multi-night work, or a reserve day)."""

    start: datetime
    end: datetime | None = None
    reserve: bool = False  # 予備日: used only if the planned windows cannot be

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start.astimezone(JST).isoformat(),
                "end": self.end.astimezone(JST).isoformat() if self.end else None,
                "reserve": self.reserve}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TimeWindow:
        end = d.get("end")
        return cls(datetime.fromisoformat(d["start"]),
                   datetime.fromisoformat(end) if end else None, bool(d.get("reserve")))


@dataclass(frozen=True)
class Changed:
    """One thing a revision changed, as a reader reads it: 「状況: 予定 → 中止」."""

    label: str
    before: str
    after: str


@dataclass(frozen=True)
class Notice:
    """A notice as normalised from a source. Times are aware; prefectures are codes."""

    source: str
    external_id: str
    carrier: str
    kind: NoticeKind
    status: NoticeStatus
    title: str
    body: str = ""
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    prefectures: tuple[str, ...] = ()
    localities: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    url: str | None = None
    report_number: int | None = None
    # Every window when there is more than one (multi-night work, 各日, 予備日);
    # starts_at/ends_at are the first planned one.
    windows: tuple[TimeWindow, ...] = ()
    # When NTT says it posted or last updated the notice (掲載日時, 更新日時, an RSS
    # pubDate), where its page states one: shown beside jpixd's own time, never for it.
    published_at: datetime | None = None
    # What this revision changed from the one before (jpixd.changes): kept with the
    # revision, for its mail and its page; not part of what makes a revision.
    changes: tuple[Changed, ...] = ()


@dataclass(frozen=True)
class Subscriber:
    email: str
    name: str = ""
    organization: str = ""
    carriers: tuple[str, ...] = ALL_CARRIERS
    prefectures: tuple[str, ...] = ()  # empty: all
    kinds: tuple[str, ...] = ALL_KINDS
    services: tuple[str, ...] = ()  # empty: all
    windows: tuple[str, ...] = ALL_WINDOWS
    failure_respects_windows: bool = False
    charset: str | None = None  # None: the [mail] charset
    status: SubscriberStatus = SubscriberStatus.ACTIVE
    paused: bool = False  # the subscriber's own pause (self-service): no mail meanwhile
    legacy_id: str = ""  # the old system's id (its unsubscribe links carry it)
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Matchable(Protocol):
    """What a fan-out reads of a subscriber: a `Subscriber`, or an `AudienceMember`."""

    @property
    def id(self) -> int | None: ...
    @property
    def email(self) -> str: ...
    @property
    def carriers(self) -> tuple[str, ...]: ...
    @property
    def prefectures(self) -> tuple[str, ...]: ...
    @property
    def kinds(self) -> tuple[str, ...]: ...
    @property
    def services(self) -> tuple[str, ...]: ...
    @property
    def windows(self) -> tuple[str, ...]: ...
    @property
    def failure_respects_windows(self) -> bool: ...
    @property
    def status(self) -> SubscriberStatus: ...


class StoredMatchable(Matchable, Protocol):
    """A `Matchable` that is stored: it has its id (the fan-out plans mail for these)."""

    @property
    def id(self) -> int: ...


class AudienceMember(NamedTuple):
    """An active subscriber as the store reads the audience for a fan-out: only what
    matching needs. A tuple, because 100,000 of them are made from rows on the first
    fan-out after the subscribers change (a frozen `Subscriber` cost 2.4 µs each)."""

    id: int
    email: str
    carriers: tuple[str, ...]
    prefectures: tuple[str, ...]
    kinds: tuple[str, ...]
    services: tuple[str, ...]
    windows: tuple[str, ...]
    failure_respects_windows: bool
    status: SubscriberStatus = SubscriberStatus.ACTIVE


class PlannedDelivery(NamedTuple):
    """One delivery the fan-out decided on, before it is a row (a tuple: a fan-out makes
    tens of thousands)."""

    subscriber_id: int
    email: str
    purpose: str  # "notice" | "reminder"
    priority: int  # lower goes first
    not_before: datetime


@dataclass(frozen=True)
class Delivery:
    id: int
    revision_id: int | None  # None: self-service mail (a confirmation, a manage link)
    notice_id: int | None
    subscriber_id: int
    email: str
    purpose: str
    slot: str
    priority: int
    state: DeliveryState
    not_before: datetime
    attempts: int = 0
    reason: str | None = None
    sent_at: datetime | None = None
    message_id: str | None = None
    ses_message_id: str | None = None
    last_error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class StoredNotice:
    """A notice as the store holds it: the notice, its ids and its current revision."""

    id: int
    notice: Notice
    revision: str
    first_seen: datetime
    last_changed: datetime
    last_seen: datetime


@dataclass(frozen=True)
class FanoutPlan:
    """What one revision calls for: its own mail and its reminders (slot, plan)."""

    notices: list[PlannedDelivery] = field(default_factory=list)
    reminders: list[tuple[str, PlannedDelivery]] = field(default_factory=list)


@dataclass(frozen=True)
class SourceState:
    """What the poller keeps per source between polls (and across restarts)."""

    etag: str | None = None
    last_modified: str | None = None
    permanent_url: str | None = None
    permanent_for: str | None = None  # the configured URL the redirect was learnt from
    baseline_done: bool = False
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    next_poll_at: datetime | None = None
    last_result: str | None = None  # ok | not_modified | error | parse_error | layout_changed
    last_items: int | None = None  # notices the last good poll yielded
    layout_warning: str | None = None  # why the page looks redesigned, while it does
    detail_error: str | None = None  # a detail page that keeps failing (NTT West)


@dataclass(frozen=True)
class Revision:
    id: int
    revision: str
    change: Change
    content: dict[str, object]
    mailed: bool
    seen_at: datetime


@dataclass(frozen=True)
class Claimed:
    """A delivery the sender has claimed, with what it needs to render and send it."""

    delivery: Delivery
    notice_id: int  # the delivery's (a claim takes notice mail only)
    notice: Notice
    change: Change  # REMINDER for reminders, else the revision's change
    subscriber: Subscriber
    subscriber_live: bool  # not deleted
    suppressed: bool = False  # the address is suppressed (read when claimed)


def notice_windows(n: Notice) -> list[TimeWindow]:
    """A notice's windows: every one it lists, or its one start and end, or none."""
    if n.windows:
        return list(n.windows)
    return [TimeWindow(n.starts_at, n.ends_at)] if n.starts_at is not None else []


def recovered_at(n: Notice) -> datetime | None:
    """When a recovered failure recovered (its end), else None."""
    return n.ends_at if n.kind == NoticeKind.FAILURE and n.status == NoticeStatus.RECOVERED \
        else None


# A notice as JSON: the content of a revision in the store and in the admin API.
def notice_to_json(n: Notice) -> dict[str, Any]:
    return {
        "source": n.source, "external_id": n.external_id, "carrier": n.carrier,
        "kind": str(n.kind), "status": str(n.status), "title": n.title, "body": n.body,
        # Shown in JST: that is how NTT writes them and how operators read them.
        "starts_at": n.starts_at.astimezone(JST).isoformat() if n.starts_at else None,
        "ends_at": n.ends_at.astimezone(JST).isoformat() if n.ends_at else None,
        "prefectures": list(n.prefectures), "localities": list(n.localities),
        "services": list(n.services), "url": n.url, "report_number": n.report_number,
        "windows": [w.to_json() for w in n.windows],
        **({"published_at": n.published_at.astimezone(JST).isoformat()}
           if n.published_at else {}),
        **({"changes": _changes(n.changes)} if n.changes else {}),
    }


def notice_from_json(d: dict[str, Any]) -> Notice:
    """The inverse of notice_to_json: a revision's content as a Notice."""
    def when(key: str) -> datetime | None:
        value = d.get(key)
        return datetime.fromisoformat(value) if value else None
    return Notice(
        source=d["source"], external_id=d["external_id"], carrier=d["carrier"],
        kind=NoticeKind(d["kind"]), status=NoticeStatus(d["status"]), title=d["title"],
        body=d.get("body", ""), starts_at=when("starts_at"), ends_at=when("ends_at"),
        prefectures=tuple(d.get("prefectures", ())), localities=tuple(d.get("localities", ())),
        services=tuple(d.get("services", ())), url=d.get("url"),
        report_number=d.get("report_number"),
        windows=tuple(TimeWindow.from_json(w) for w in d.get("windows") or ()),
        published_at=when("published_at"),
        changes=changes_from_json(d.get("changes") or ()),
    )


def _changes(changes: Sequence[Changed]) -> list[list[str]]:
    return [[c.label, c.before, c.after] for c in changes]


def changes_to_json(changes: Sequence[Changed]) -> str:
    """A revision's changes as the store keeps them: [label, before, after] each."""
    return json.dumps(_changes(changes), ensure_ascii=False)


def changes_from_json(items: Sequence[Sequence[object]]) -> tuple[Changed, ...]:
    return tuple(Changed(str(a), str(b), str(c)) for a, b, c in items)
