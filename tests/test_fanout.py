"""Fan-out: who gets which notice and when (pure), and its store call (one transaction)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jpixd import fanout
from jpixd.fanout import Policy, next_open, plan_notice, plan_reminders, planner
from jpixd.model import (
    Change,
    DeliveryState,
    Notice,
    NoticeKind,
    NoticeStatus,
    Subscriber,
    SubscriberStatus,
    TimeWindow,
)
from jpixd.store import Store

JST = ZoneInfo("Asia/Tokyo")
POLICY = Policy(tz=JST)


def jst(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=JST)


def failure(**kw: object) -> Notice:
    base = Notice(source="west", external_id="F1", carrier="west", kind=NoticeKind.FAILURE,
                  status=NoticeStatus.OCCURRED, title="故障", prefectures=("27",),
                  services=("フレッツ光ネクスト", "ひかり電話"))
    return replace(base, **kw)  # type: ignore[arg-type]


def construction(**kw: object) -> Notice:
    base = Notice(source="east", external_id="C1", carrier="east",
                  kind=NoticeKind.CONSTRUCTION, status=NoticeStatus.SCHEDULED, title="工事",
                  prefectures=("13", "14"), services=("フレッツ光ネクスト",),
                  starts_at=jst(2026, 12, 10, 0), ends_at=jst(2026, 12, 10, 6))
    return replace(base, **kw)  # type: ignore[arg-type]


def sub(i: int = 1, **kw: object) -> Subscriber:
    return replace(Subscriber(email=f"u{i}@isp.example.jp", id=i), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("subscriber", "notice", "expected"), [
    # carriers
    (sub(carriers=("west",)), failure(), True),
    (sub(carriers=("east",)), failure(), False),
    (sub(carriers=("east", "west")), construction(), True),
    # prefectures: empty means all; a notice without a known area goes to everyone
    (sub(prefectures=()), failure(), True),
    (sub(prefectures=("27", "28")), failure(), True),
    (sub(prefectures=("13",)), failure(), False),
    (sub(prefectures=("13",)), failure(prefectures=()), True),
    (sub(prefectures=("14",)), construction(), True),
    # kinds
    (sub(kinds=("construction",)), failure(), False),
    (sub(kinds=("failure",)), failure(), True),
    (sub(kinds=("failure",)), construction(), False),
    # services: empty means all; a wanted service is found inside the offered one
    (sub(services=("ひかり電話",)), failure(), True),
    (sub(services=("フレッツ光",)), construction(), True),
    (sub(services=("ﾌﾚｯﾂ光",)), construction(), True),  # half-width kana, NFKC
    (sub(services=("ひかり電話",)), construction(), False),
    (sub(services=("ひかり電話",)), construction(services=()), True),
    # status
    (sub(status=SubscriberStatus.PENDING), failure(), False),
    (sub(status=SubscriberStatus.UNSUBSCRIBED), failure(), False),
    (sub(status=SubscriberStatus.SUPPRESSED), failure(), False),
])
def test_matching(subscriber: Subscriber, notice: Notice, expected: bool) -> None:
    assert fanout.matches(subscriber, notice) is expected
    planned = plan_notice(notice, Change.NEW, [subscriber], frozenset(), jst(2026, 12, 1, 12),
                          POLICY)
    assert bool(planned) is expected


def test_suppressed_addresses_get_nothing() -> None:
    s = sub()
    assert plan_notice(failure(), Change.NEW, [s], frozenset({s.email}),
                       jst(2026, 12, 1, 12), POLICY) == []


@pytest.mark.parametrize(("at", "windows", "expected"), [
    (jst(2026, 12, 1, 12), ("day",), jst(2026, 12, 1, 12)),
    (jst(2026, 12, 1, 19), ("day",), jst(2026, 12, 2, 8)),
    (jst(2026, 12, 1, 23, 30), ("day",), jst(2026, 12, 2, 8)),
    (jst(2026, 12, 2, 7, 59), ("day",), jst(2026, 12, 2, 8)),
    (jst(2026, 12, 1, 12), ("night",), jst(2026, 12, 1, 19)),
    (jst(2026, 12, 1, 22, 59), ("night",), jst(2026, 12, 1, 22, 59)),
    (jst(2026, 12, 1, 23), ("night",), jst(2026, 12, 2, 19)),
    (jst(2026, 12, 1, 12), ("late_night",), jst(2026, 12, 1, 23)),
    (jst(2026, 12, 2, 3), ("late_night",), jst(2026, 12, 2, 3)),
    (jst(2026, 12, 1, 20), ("day", "late_night"), jst(2026, 12, 1, 23)),
    (jst(2026, 12, 1, 20), ("day", "night", "late_night"), jst(2026, 12, 1, 20)),
    # Year end: 31 Dec 23:30 → 1 Jan 08:00; JST has no DST to trip on.
    (jst(2026, 12, 31, 23, 30), ("day",), jst(2027, 1, 1, 8)),
])
def test_next_open_window(at: datetime, windows: tuple[str, ...], expected: datetime) -> None:
    assert next_open(at, windows, JST) == expected
    assert next_open(at.astimezone(UTC), windows, JST) == expected


def test_quiet_window_failure_at_once_construction_next_morning() -> None:
    day_only = sub(windows=("day",))
    night = jst(2026, 12, 1, 21)
    [f] = plan_notice(failure(), Change.NEW, [day_only], frozenset(), night, POLICY)
    assert f.not_before == night and f.priority == fanout.PRIORITY_FAILURE
    [c] = plan_notice(construction(carrier="west", prefectures=()), Change.NEW, [day_only],
                      frozenset(), night, POLICY)
    assert c.not_before == jst(2026, 12, 2, 8)
    assert c.priority == fanout.PRIORITY_CONSTRUCTION > f.priority


def test_failure_respects_windows_when_asked() -> None:
    s = sub(windows=("day",), failure_respects_windows=True)
    [f] = plan_notice(failure(), Change.NEW, [s], frozenset(), jst(2026, 12, 1, 21), POLICY)
    assert f.not_before == jst(2026, 12, 2, 8)
    everyone = Policy(tz=JST, quiet_hours_respected_for=frozenset({"construction", "failure"}))
    [g] = plan_notice(failure(), Change.NEW, [sub(windows=("day",))], frozenset(),
                      jst(2026, 12, 1, 21), everyone)
    assert g.not_before == jst(2026, 12, 2, 8)


def test_construction_goes_at_once_where_the_operator_lets_it() -> None:
    """Windows hold construction mail back only while the policy says so; a subscriber's
    own `failure_respects_windows` is about failures alone."""
    night = jst(2026, 12, 1, 21)
    nobody = Policy(tz=JST, quiet_hours_respected_for=frozenset())
    [c] = plan_notice(construction(carrier="west", prefectures=()), Change.NEW,
                      [sub(windows=("day",), failure_respects_windows=True)], frozenset(),
                      night, nobody)
    assert c.not_before == night
    [f] = plan_notice(failure(), Change.NEW, [sub(windows=("day",),
                                                  failure_respects_windows=True)],
                      frozenset(), night, nobody)
    assert f.not_before == jst(2026, 12, 2, 8)


@pytest.mark.parametrize("change", [Change.SILENT, Change.BASELINE])
def test_unmailed_changes_plan_no_mail(change: Change) -> None:
    assert plan_notice(failure(), change, [sub()], frozenset(), jst(2026, 12, 1, 12),
                       POLICY) == []


def test_reminders_before_the_start() -> None:
    policy = Policy(tz=JST, reminder_before=(timedelta(hours=72), timedelta(hours=24)))
    s = sub()
    now = jst(2026, 12, 1, 12)
    out = plan_reminders(construction(), Change.NEW, [s], frozenset(), now, policy)
    # Start 10 Dec 00:00 JST: -72h is 7 Dec 00:00 (late night), -24h is 9 Dec 00:00.
    assert [(slot, p.not_before) for slot, p in out] == [
        ("259200s", jst(2026, 12, 7, 0)), ("86400s", jst(2026, 12, 9, 0))]
    # A day-only subscriber's reminder moves to 08:00 the same day, still before the start.
    day = sub(2, windows=("day",))
    start_noon = construction(starts_at=jst(2026, 12, 10, 12))
    [(_, r)] = plan_reminders(start_noon, Change.NEW, [day], frozenset(), now, POLICY)
    assert r.not_before == jst(2026, 12, 9, 12)
    # Midnight start: the 24h reminder falls at 00:00 and moves to 08:00 the day before.
    [(_, m)] = plan_reminders(construction(), Change.NEW, [day], frozenset(), now, POLICY)
    assert m.not_before == jst(2026, 12, 9, 8)
    # Pushed to or past the start by the window: no reminder at all.
    six = Policy(tz=JST, reminder_before=(timedelta(hours=6),))
    early_work = construction(starts_at=jst(2026, 12, 10, 7))  # reminder 01:00 → 08:00
    assert plan_reminders(early_work, Change.NEW, [day], frozenset(), now, six) == []


def test_no_reminder_once_its_time_has_passed_or_for_other_states() -> None:
    s = sub()
    late = jst(2026, 12, 9, 6)  # 18 hours before the start
    assert plan_reminders(construction(), Change.NEW, [s], frozenset(), late, POLICY) == []
    early = jst(2026, 12, 1, 12)
    for status in (NoticeStatus.CANCELLED, NoticeStatus.COMPLETED, NoticeStatus.IN_PROGRESS):
        assert plan_reminders(construction(status=status), Change.UPDATE, [s], frozenset(),
                              early, POLICY) == []
    assert plan_reminders(failure(), Change.NEW, [s], frozenset(), early, POLICY) == []
    assert plan_reminders(construction(), Change.SILENT, [s], frozenset(), early, POLICY) == []


# ---------------------------------------------------------------- with the store


async def add_subscribers(store: Store, now: datetime, *subs: Subscriber) -> list[int]:
    ids = []
    for s in subs:
        created = await store.create_subscriber(replace(s, id=None), now)
        assert created.id is not None
        ids.append(created.id)
    return ids


async def states(store: Store, notice_id: int) -> list[tuple[str, str, str, str | None]]:
    items, _ = await store.list_deliveries(notice_id=notice_id, limit=1000)
    return [(d.email, d.purpose, str(d.state), d.reason) for d in items]


async def test_a_revision_and_its_deliveries_are_recorded_together(store: Store) -> None:
    now = jst(2026, 12, 1, 12)
    await add_subscribers(store, now, sub(1, prefectures=("27",)), sub(2, prefectures=("13",)),
                          sub(3, kinds=("construction",)))
    n = failure()
    res = await store.record_revision(n, revision="r1", change=Change.NEW, now=now,
                                      planner=planner(n, Change.NEW, now, POLICY))
    assert (res.deliveries, res.reminders, res.superseded) == (1, 0, 0)
    assert await states(store, res.notice_id) == [
        ("u1@isp.example.jp", "notice", "pending", None)]
    stored = await store.notice_by_key("west", "F1")
    assert stored is not None and stored.revision == "r1" and stored.notice == n


async def test_a_newer_revision_supersedes_pending_mail_of_the_older(store: Store) -> None:
    now = jst(2026, 12, 1, 21)  # night: construction waits for 08:00 for day-only users
    await add_subscribers(store, now, sub(1, windows=("day",)))
    n1 = construction()
    r1 = await store.record_revision(n1, revision="r1", change=Change.NEW, now=now,
                                     planner=planner(n1, Change.NEW, now, POLICY))
    assert (r1.deliveries, r1.reminders) == (1, 1)
    later = now + timedelta(minutes=30)
    n2 = construction(title="工事（時間変更）", starts_at=jst(2026, 12, 10, 12),
                      ends_at=jst(2026, 12, 10, 15))
    r2 = await store.record_revision(n2, revision="r2", change=Change.UPDATE, now=later,
                                     planner=planner(n2, Change.UPDATE, later, POLICY))
    assert (r2.deliveries, r2.reminders, r2.superseded, r2.reminders_cancelled) == (1, 1, 1, 1)
    items, _ = await store.list_deliveries(notice_id=r2.notice_id)
    by_rev = {(d.revision_id, d.purpose): d for d in items}
    old = by_rev[(r1.revision_id, "notice")]
    assert old.state == DeliveryState.SKIPPED and old.reason == "superseded"
    new = by_rev[(r2.revision_id, "notice")]
    assert new.state == DeliveryState.PENDING and new.not_before == jst(2026, 12, 2, 8)
    assert by_rev[(r2.revision_id, "reminder")].not_before == jst(2026, 12, 9, 12)

    # Cancelled: no new reminder, the planned one is cancelled, the cancellation is mailed.
    n3 = replace(n2, status=NoticeStatus.CANCELLED)
    r3 = await store.record_revision(n3, revision="r3", change=Change.CANCEL, now=later,
                                     planner=planner(n3, Change.CANCEL, later, POLICY))
    assert (r3.deliveries, r3.reminders, r3.reminders_cancelled) == (1, 0, 1)
    items, _ = await store.list_deliveries(notice_id=r3.notice_id)
    reminder = next(d for d in items if d.purpose == "reminder"
                    and d.revision_id == r2.revision_id)
    assert reminder.state == DeliveryState.SKIPPED and reminder.reason == "notice cancelled"


async def test_a_silent_revision_mails_nothing_and_keeps_what_is_planned(store: Store) -> None:
    now = jst(2026, 12, 1, 12)
    await add_subscribers(store, now, sub(1))
    n = construction()
    r1 = await store.record_revision(n, revision="r1", change=Change.NEW, now=now,
                                     planner=planner(n, Change.NEW, now, POLICY))
    r2 = await store.record_revision(n, revision="r2", change=Change.SILENT, now=now,
                                     planner=planner(n, Change.SILENT, now, POLICY))
    assert (r2.deliveries, r2.reminders, r2.superseded, r2.reminders_cancelled) == (0, 0, 0, 0)
    assert [s for _, _, s, _ in await states(store, r1.notice_id)] == ["pending", "pending"]


async def test_subscriber_changes_are_seen_by_the_next_fanout(store: Store) -> None:
    now = jst(2026, 12, 1, 12)
    [sid] = await add_subscribers(store, now, sub(1, prefectures=("27",)))
    n = failure()
    r1 = await store.record_revision(n, revision="r1", change=Change.NEW, now=now,
                                     planner=planner(n, Change.NEW, now, POLICY))
    assert r1.deliveries == 1
    await store.update_subscriber(sid, {"prefectures": ("13",)}, now)
    r2 = await store.record_revision(n, revision="r2", change=Change.UPDATE, now=now,
                                     planner=planner(n, Change.UPDATE, now, POLICY))
    assert r2.deliveries == 0


def test_a_baseline_mails_nothing_now_but_keeps_future_reminders() -> None:
    s = sub()
    now = jst(2026, 12, 1, 12)
    assert plan_notice(construction(), Change.BASELINE, [s], frozenset(), now, POLICY) == []
    [(slot, r)] = plan_reminders(construction(), Change.BASELINE, [s], frozenset(), now, POLICY)
    assert slot == "86400s" and r.not_before == jst(2026, 12, 9, 0)


def test_a_reminder_before_each_planned_night_and_none_for_the_reserve_day() -> None:
    nights = (TimeWindow(jst(2026, 12, 10, 0), jst(2026, 12, 10, 6)),
              TimeWindow(jst(2026, 12, 11, 0), jst(2026, 12, 11, 6)),
              TimeWindow(jst(2026, 12, 14, 0), jst(2026, 12, 14, 6), reserve=True))
    work = construction(starts_at=nights[0].start, ends_at=nights[0].end, windows=nights)
    out = plan_reminders(work, Change.NEW, [sub()], frozenset(), jst(2026, 12, 1, 12), POLICY)
    assert [(slot, p.not_before) for slot, p in out] == [
        ("86400s", jst(2026, 12, 9, 0)), ("86400s@20261210T1500", jst(2026, 12, 10, 0))]
