"""Who gets which notice revision, and when. Pure: data and `now` in, data out.

The store calls `plan()` inside the transaction that records a revision, so the
deliveries exist exactly when the revision does (SPEC §2).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from jpixd.config import Config
from jpixd.model import (
    Change,
    FanoutPlan,
    Matchable,
    Notice,
    NoticeKind,
    NoticeStatus,
    PlannedDelivery,
    StoredMatchable,
    SubscriberStatus,
    Window,
)

# Lower goes first: a failure notice overtakes queued construction mail.
# Self-service mail goes before any notice mail: somebody waits at a page for it.
PRIORITY_SELF_SERVICE = -10
PRIORITY_FAILURE = 0
PRIORITY_CONSTRUCTION = 10
PRIORITY_REMINDER = 20

# Each window starts at this JST hour and runs to the next one.
_WINDOW_STARTS: tuple[tuple[int, Window], ...] = (
    (8, Window.DAY), (19, Window.NIGHT), (23, Window.LATE_NIGHT),
)


@dataclass(frozen=True)
class Policy:
    tz: ZoneInfo
    quiet_hours_respected_for: frozenset[str] = frozenset({"construction"})
    reminder_before: tuple[timedelta, ...] = (timedelta(hours=24),)

    @classmethod
    def from_config(cls, cfg: Config) -> Policy:
        return cls(tz=cfg.tz,
                   quiet_hours_respected_for=frozenset(cfg.sending.quiet_hours_respected_for),
                   reminder_before=cfg.sending.reminder_before)


def window_at(t: datetime, tz: ZoneInfo) -> Window:
    hour = t.astimezone(tz).hour
    if 8 <= hour < 19:
        return Window.DAY
    if 19 <= hour < 23:
        return Window.NIGHT
    return Window.LATE_NIGHT


def next_open(t: datetime, windows: Iterable[str], tz: ZoneInfo) -> datetime:
    """The earliest moment at or after `t` that lies in one of `windows` (all if empty)."""
    allowed = set(windows)
    if not allowed or window_at(t, tz) in allowed:
        return t
    local = t.astimezone(tz)
    for days in range(3):
        day = local.date() + timedelta(days=days)
        for hour, window in _WINDOW_STARTS:
            start = datetime.combine(day, time(hour), tz)
            if start > local and window in allowed:
                return start.astimezone(UTC)
    return t  # not reached: the windows cover every hour of a day


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().replace(" ", "")


def services_match(wanted: Sequence[str], offered: Sequence[str]) -> bool:
    """Empty `wanted` means all; a notice naming no service might affect any of them.

    A wanted service matches when an offered one contains it ("フレッツ光" matches
    "フレッツ光ネクスト"), after NFKC and case folding.
    """
    if not wanted or not offered:
        return True
    offered_n = [_norm(o) for o in offered]
    return any(_norm(w) in o for w in wanted for o in offered_n)


def _matcher(notice: Notice) -> Callable[[Matchable], bool]:
    """`matches` for one notice, what depends on the notice alone worked out once (a
    fan-out asks it of 100,000 subscribers)."""
    carrier, kind = notice.carrier, str(notice.kind)
    areas = frozenset(notice.prefectures)
    offered = notice.services
    active = SubscriberStatus.ACTIVE

    def test(sub: Matchable) -> bool:
        if sub.status != active or carrier not in sub.carriers or kind not in sub.kinds:
            return False
        # A notice whose area could not be read goes to everyone: better a mail too
        # many than a failure nobody heard of.
        if sub.prefectures and areas and areas.isdisjoint(sub.prefectures):
            return False
        # Most want every service: answered here, without a call for each of them.
        return not sub.services or services_match(sub.services, offered)

    return test


def matches(sub: Matchable, notice: Notice) -> bool:
    return _matcher(notice)(sub)


def respects_windows_of(kind: NoticeKind, policy: Policy) -> bool:
    """Whether the policy has every subscriber's delivery windows hold back mail of this
    kind. A failure's mail also waits for the windows of a subscriber who asked for it
    (`failure_respects_windows`): `_sending_times` adds that per subscriber."""
    return str(kind) in policy.quiet_hours_respected_for


def _audience(notice: Notice, subscribers: Sequence[Matchable],
              suppressed: frozenset[str]) -> list[StoredMatchable]:
    """Each stored subscriber the notice is for. (The subscribers themselves, their ids
    checked here: an (id, subscriber) pair made for each of 76,000 was a tenth of the
    planning's instructions.)"""
    test = _matcher(notice)
    return cast(list[StoredMatchable], [s for s in subscribers if s.id is not None
                                        and s.email not in suppressed and test(s)])


def _sending_times(at: datetime, kind: NoticeKind,
                   policy: Policy) -> Callable[[Matchable], datetime]:
    """When a subscriber's mail due `at` may go: at once, or when one of its windows
    opens. Subscribers share a handful of window sets: each is worked out once."""
    opens: dict[tuple[str, ...], datetime] = {}
    # Whether the windows apply, what depends on the notice alone decided once (it is
    # asked of every recipient: 76,000 calls were a third of a fan-out's matching).
    always = respects_windows_of(kind, policy)
    failure = kind == NoticeKind.FAILURE

    def when(sub: Matchable) -> datetime:
        if not (always or (failure and sub.failure_respects_windows)):
            return at
        found = opens.get(sub.windows)
        if found is None:
            found = opens[sub.windows] = next_open(at, sub.windows, policy.tz)
        return found

    return when


def plan_notice(notice: Notice, change: Change, subscribers: Sequence[Matchable],
                suppressed: frozenset[str], now: datetime, policy: Policy) -> list[PlannedDelivery]:
    """The mail for this revision itself: one delivery per matching subscriber."""
    if not change.mailed:
        return []
    priority = PRIORITY_FAILURE if notice.kind == NoticeKind.FAILURE else PRIORITY_CONSTRUCTION
    when = _sending_times(now, notice.kind, policy)
    return [PlannedDelivery(s.id, s.email, "notice", priority, when(s))
            for s in _audience(notice, subscribers, suppressed)]


def reminder_slot(before: timedelta) -> str:
    return f"{int(before.total_seconds())}s"


def reminder_starts(notice: Notice) -> list[tuple[str, datetime]]:
    """(slot suffix, start) of each planned window: the first has no suffix (as before
    windows existed); later nights are told apart by their start. Reserve days get no
    reminder: they are used only if the planned night cannot be."""
    planned = [w.start for w in notice.windows if not w.reserve]
    if not planned:
        return [("", notice.starts_at)] if notice.starts_at else []
    return [("" if i == 0 else "@" + start.astimezone(UTC).strftime("%Y%m%dT%H%M"), start)
            for i, start in enumerate(planned)]


def plan_reminders(notice: Notice, change: Change, subscribers: Sequence[Matchable],
                   suppressed: frozenset[str], now: datetime,
                   policy: Policy) -> list[tuple[str, PlannedDelivery]]:
    """Reminders `reminder_before` the start of each window of scheduled (or postponed,
    with its new date) construction, as (slot, plan).

    None once the moment has passed, and none that the subscriber's windows would push
    to or past the start itself (the reminder would then say nothing new).
    """
    if (notice.kind != NoticeKind.CONSTRUCTION
            or notice.status not in (NoticeStatus.SCHEDULED, NoticeStatus.POSTPONED)
            or change in (Change.SILENT, Change.WITHDRAW)):
        return []
    recipients = _audience(notice, subscribers, suppressed)
    out: list[tuple[str, PlannedDelivery]] = []
    for suffix, starts in reminder_starts(notice):
        for before in policy.reminder_before:
            at = starts - before
            if at <= now:
                continue
            sending = _sending_times(at, notice.kind, policy)
            for s in recipients:
                when = sending(s)
                if when >= starts:
                    continue
                out.append((reminder_slot(before) + suffix,
                            PlannedDelivery(s.id, s.email, "reminder", PRIORITY_REMINDER,
                                            when)))
    return out


def planner(notice: Notice, change: Change, now: datetime,
            policy: Policy) -> Callable[[Sequence[Matchable], frozenset[str]], FanoutPlan]:
    """The function the store calls with the audience it read inside its transaction."""
    def plan(subscribers: Sequence[Matchable], suppressed: frozenset[str]) -> FanoutPlan:
        return FanoutPlan(
            notices=plan_notice(notice, change, subscribers, suppressed, now, policy),
            reminders=plan_reminders(notice, change, subscribers, suppressed, now, policy),
        )
    return plan


def plan_channels(plan: Callable[[Sequence[Matchable], frozenset[str]], FanoutPlan],
                  subscribers: Sequence[Matchable],
                  channels: Sequence[tuple[int, int, str]]) -> list[tuple[int, str, datetime]]:
    """(channel id, kind, not before) for each active channel (id, subscriber id, kind)
    whose subscriber this revision's own mail is for: the same matching and windows as
    mail (issue 26). A suppressed address stops its mail only, so the plan is asked
    again for the channels' holders alone, with nothing suppressed."""
    if not channels:
        return []
    holders = {sid for _, sid, _ in channels}
    audience = [s for s in subscribers if s.id in holders]
    due = {p.subscriber_id: p.not_before for p in plan(audience, frozenset()).notices}
    return [(cid, kind, due[sid]) for cid, sid, kind in channels if sid in due]


def retires(change: Change, status: NoticeStatus, *, first_seen: bool) -> tuple[bool, str | None]:
    """What a newly recorded revision does to the mail its notice already has waiting:
    (whether unsent notice mail is superseded, the reason reminders still to come are
    cancelled, or None). A notice seen for the first time has nothing waiting."""
    if first_seen:
        return False, None
    supersede = change.mailed  # nobody gets a stale mail just before the fresh one
    if change == Change.SILENT:
        return supersede, None
    return supersede, ("replanned" if status == NoticeStatus.SCHEDULED else f"notice {status}")

