"""The calendar as Outlook, Thunderbird and Google read it (reader review, issue 25
part 3): every change raises SEQUENCE (or a client may keep a moved work at its old
time), each night's UID is its date (dropping one night leaves the others' events as
they were), a cancelled work's events stay, cancelled, and the event says where."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from jpixd.model import JST, Notice, NoticeKind, NoticeStatus, StoredNotice, TimeWindow
from jpixd.web.links import webcal
from jpixd.web.syndication import ics_events

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=JST)
NIGHTS = tuple(TimeWindow(datetime(2026, 12, d, 0, 0, tzinfo=JST),
                          datetime(2026, 12, d, 5, 0, tzinfo=JST)) for d in (8, 9, 10))
WORK = StoredNotice(
    id=7, revision="r1", first_seen=T0, last_changed=T0, last_seen=T0,
    notice=Notice(source="west", external_id="C7", carrier="west",
                  kind=NoticeKind.CONSTRUCTION, status=NoticeStatus.SCHEDULED,
                  title="大阪市の一部における通信設備の工事", prefectures=("27",),
                  localities=("大阪市中央区", "大阪市北区"), starts_at=NIGHTS[0].start,
                  ends_at=NIGHTS[0].end, windows=NIGHTS))


def events(s: StoredNotice) -> dict[str, dict[str, str]]:
    text = ics_events(s, base_url="https://notice.example.jp", now=T0)
    unfolded = text.replace("\r\n ", "").split("\r\n")
    out: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in unfolded:
        if line == "END:VEVENT":
            out[current["UID"]] = current
            current = {}
        elif ":" in line and line != "BEGIN:VEVENT":
            key, _, value = line.partition(":")
            current[key] = value
    return out


def test_each_night_keeps_its_event_and_every_change_raises_the_sequence() -> None:
    first = events(WORK)
    assert sorted(first) == [f"notice-7-202612{d}@notice.example.jp" for d in ("08", "09", "10")]
    # NTT drops the second night and moves the third by an hour: a revision.
    later = T0 + timedelta(hours=3)
    moved = replace(WORK, revision="r2", last_changed=later, notice=replace(
        WORK.notice, windows=(NIGHTS[0], TimeWindow(NIGHTS[2].start + timedelta(hours=1),
                                                    NIGHTS[2].end))))
    second = events(moved)
    assert sorted(second) == [f"notice-7-202612{d}@notice.example.jp" for d in ("08", "10")]
    for uid, event in second.items():
        assert int(event["SEQUENCE"]) > int(first[uid]["SEQUENCE"]), uid
        assert event["LAST-MODIFIED"] == "20261201T040000Z"
    assert second["notice-7-20261210@notice.example.jp"]["DTSTART"] == "20261209T160000Z"
    # Cancelled: the same events, marked so (a client removes them), with a higher sequence.
    cancelled = events(replace(moved, last_changed=later + timedelta(minutes=5),
                               notice=replace(moved.notice, status=NoticeStatus.CANCELLED)))
    assert set(cancelled) == set(second)
    assert all(e["STATUS"] == "CANCELLED" and int(e["SEQUENCE"]) > int(second[u]["SEQUENCE"])
               for u, e in cancelled.items())


def test_an_event_says_where_and_two_windows_on_one_day_stay_apart() -> None:
    [event, *_] = events(WORK).values()
    assert event["LOCATION"] == "大阪府（大阪市中央区、大阪市北区）"
    twice = replace(WORK, notice=replace(WORK.notice, windows=(
        NIGHTS[0], TimeWindow(NIGHTS[0].start + timedelta(hours=6)),
        TimeWindow(NIGHTS[1].start, reserve=True))))
    assert sorted(events(twice)) == [
        "notice-7-20261208-2@notice.example.jp", "notice-7-20261208@notice.example.jp",
        "notice-7-20261209r@notice.example.jp"]


def test_a_calendar_link_subscribes() -> None:
    assert webcal("https://notice.example.jp/notices.ics?kind=construction") == \
        "webcal://notice.example.jp/notices.ics?kind=construction"
    assert webcal("http://127.0.0.1:8081/s/calendar.ics?t=x") == \
        "webcal://127.0.0.1:8081/s/calendar.ics?t=x"
