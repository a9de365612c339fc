"""Time moves by itself (reader review, issue 25 part 2): on 12/6 works of 12/3 and 12/5
still read 【工事・予定】. A scheduled work is 実施中 during its window and 終了 after the
last one, on the board and the notice's page, whatever the carrier has said since; what
the carrier said (中止, 延期, 完了) stands."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser

from jpixd.model import JST, Change, Notice, NoticeKind, NoticeStatus, TimeWindow
from jpixd.timeline import badge, clock_changed_at, label_now
from tests.webharness import site, write_feed

WORK = Notice(source="east", external_id="C1", carrier="east", kind=NoticeKind.CONSTRUCTION,
              status=NoticeStatus.SCHEDULED, title="工事",
              starts_at=datetime(2026, 12, 10, 1, 0, tzinfo=JST),
              ends_at=datetime(2026, 12, 10, 5, 0, tzinfo=JST))


def at(hour: int, day: int = 10) -> datetime:
    return datetime(2026, 12, day, hour, 0, tzinfo=JST)


def test_a_work_is_in_progress_in_its_window_and_ended_after_it() -> None:
    assert [label_now(WORK, at(h)) for h in (0, 1, 4, 5)] == ["予定", "実施中", "実施中", "終了"]
    nights = replace(WORK, windows=(
        TimeWindow(at(1), at(5)), TimeWindow(at(1, 11), at(5, 11)),
        TimeWindow(at(1, 12), at(5, 12), reserve=True)))
    # Between two nights it is still to come; a reserve day does not keep it open.
    assert [label_now(nights, t) for t in (at(12), at(2, 11), at(6, 11))] == \
        ["予定", "実施中", "終了"]
    for stated in (NoticeStatus.CANCELLED, NoticeStatus.POSTPONED, NoticeStatus.COMPLETED):
        assert label_now(replace(WORK, status=stated), at(6)) != "終了"
    failure = replace(WORK, kind=NoticeKind.FAILURE, status=NoticeStatus.OCCURRED)
    assert label_now(failure, at(6)) == "発生中"
    assert label_now(replace(WORK, starts_at=None, ends_at=None), at(6)) == "予定"
    # When the clock last changed the word: a window's start, then the last end.
    assert [clock_changed_at(nights, t) for t in (at(0), at(2, 11), at(12, 11))] == \
        [None, at(1, 11), at(5, 11)]
    # The badge's word and colour: the state's, whatever the kind.
    assert badge(WORK, at(2)) == ("実施中", "running")
    assert badge(replace(failure, status=NoticeStatus.RECOVERED), at(6)) == ("回復", "recovered")
    assert badge(replace(failure, status=NoticeStatus.PARTIALLY_RECOVERED), at(6)) == \
        ("一部回復", "partial")
    assert badge(replace(WORK, status=NoticeStatus.CANCELLED), at(0)) == ("中止", "cancelled")


async def test_the_board_and_the_page_follow_the_clock(tmp_path: Path) -> None:
    now = [datetime(2026, 12, 10, 2, 0, tzinfo=JST).astimezone(UTC)]
    async with site(tmp_path, clock=lambda: now[0]) as s:
        write_feed(tmp_path, [
            {"id": "W1", "kind": "construction", "title": "今夜の工事", "prefectures": ["13"],
             "starts_at": "2026-12-10T01:00:00+09:00", "ends_at": "2026-12-10T05:00:00+09:00"},
            {"id": "W2", "kind": "construction", "title": "先週の工事", "prefectures": ["13"],
             "starts_at": "2026-12-08T01:00:00+09:00", "ends_at": "2026-12-08T05:00:00+09:00"}])
        await s.poll()
        [tonight] = [n for n in (await s.rt.store.list_notices(source="local"))[0]
                     if n.notice.title == "今夜の工事"]
        async with s.http.get(s.public + "/notices") as r:
            board = (await r.text()).replace("<wbr>", "")  # as a reader sees it
        works, ended = board.split("<h2>")[2], board.split("<h2>")[3]
        assert "【工事・実施中】今夜の工事" in works and "先週の工事" not in works
        assert "【工事・終了】先週の工事" in ended
        # State at a glance (part 1): a badge of the state's colour and word, a summary
        # at the top, and when each source was last read.
        assert '<span class="badge st-running">実施中</span>' in works
        assert '<span class="badge st-done">終了</span>' in ended
        summary = board.split('id="summary"')[1].split("</div>")[0]
        assert "現在発生中の故障 <strong>0</strong>件" in summary
        assert "本日の工事 <strong>1</strong>件" in summary
        assert "NTT東日本（local）: 最終確認 2026年12月10日(木) 02:00" in summary
        # The feeds say the same (a variant each: a built feed is kept up to a minute).
        async with s.http.get(s.public + "/notices.atom", params={"prefecture": "13"}) as r:
            entries = {e.link: e for e in feedparser.parse(await r.read()).entries}
        entry = entries[f"{s.public}/notices/{tonight.id}"]
        assert entry.title == "【工事・実施中】今夜の工事"
        now[0] += timedelta(hours=4)  # 06:00: tonight's work is over too
        async with s.http.get(f"{s.public}/notices/{tonight.id}") as r:
            assert '<h1 class="jp">【工事・終了】今夜の工事</h1>' in \
                (await r.text()).replace("<wbr>", "")
        async with s.http.get(s.public + "/notices.atom") as r:
            entries = {e.link: e for e in feedparser.parse(await r.read()).entries}
        entry = entries[f"{s.public}/notices/{tonight.id}"]
        # Its title says 終了, and its time is when it ended, so a reader sees it changed.
        assert entry.title == "【工事・終了】今夜の工事"
        assert datetime.fromisoformat(entry.updated) == at(5)
        async with s.http.get(s.public + "/notices.ics") as r:
            lines = (await r.text()).replace("\r\n ", "").split("\r\n")
        events = [dict(line.split(":", 1) for line in block)
                  for block in _blocks(lines, "VEVENT")]
        [event] = [e for e in events if e["URL"].endswith(f"/notices/{tonight.id}")]
        assert event["SUMMARY"] == "【工事・終了】今夜の工事"
        assert event["LAST-MODIFIED"] == "20261209T200000Z"  # 05:00 JST


def _blocks(lines: list[str], name: str) -> list[list[str]]:
    """The property lines of each BEGIN:name … END:name block of an unfolded calendar."""
    out: list[list[str]] = []
    for line in lines:
        if line == f"BEGIN:{name}":
            out.append([])
        elif line != f"END:{name}" and out and ":" in line:
            out[-1].append(line)
    return out


async def test_the_board_gives_ntt_s_own_time_beside_the_one_it_was_received(
        tmp_path: Path) -> None:
    """Reader review: every 「更新」 was jpixd's first sight, and read as NTT's."""
    now = [at(2)]
    work = {"id": "W1", "kind": "construction", "title": "今夜の工事", "prefectures": ["13"],
            "starts_at": "2026-12-24T01:00:00+09:00", "ends_at": "2026-12-24T05:00:00+09:00",
            "published": "2026-12-09T23:50:00+09:00"}
    async with site(tmp_path, clock=lambda: now[0]) as s:
        write_feed(tmp_path, [work])
        await s.poll()
        [stored] = (await s.rt.store.list_notices(source="local"))[0]
        async with s.http.get(f"{s.public}/notices/{stored.id}") as r:
            page = await r.text()
        assert "NTT更新 2026年12月9日(水) 23:50" in page
        assert "受信 2026年12月10日(木) 02:00" in page
        # NTT dates the same text again: recorded and shown, mailed to nobody.
        now[0] = at(3)
        write_feed(tmp_path, [{**work, "published": "2026-12-10"}])
        await s.poll()
        revisions = await s.rt.store.revisions(stored.id)
        assert [r.change for r in revisions] == [Change.NEW, Change.SILENT]
        async with s.http.get(f"{s.public}/notices/{stored.id}") as r:
            page = await r.text()
        # A date without a time is shown as the date, not as midnight.
        assert "NTT更新 2026年12月10日(木)</span>" in page
        # A source that states no time shows jpixd's alone, called what it is.
        write_feed(tmp_path, [{**work, "id": "W2", "published": None}])
        await s.poll()
        async with s.http.get(s.public + "/notices") as r:
            board = await r.text()
        assert board.count("NTT更新") == 0 and board.count("受信 ") == 1


async def test_a_long_locality_list_is_folded_with_its_count(tmp_path: Path) -> None:
    """Reader review: a 31-locality work was a wall of text on a phone."""
    places = [f"第{i}町" for i in range(31)]
    async with site(tmp_path) as s:
        write_feed(tmp_path, [{"id": "W3", "kind": "construction", "title": "広い工事",
                               "prefectures": ["13"], "localities": places,
                               "starts_at": "2026-12-24T01:00:00+09:00"}])
        await s.poll()
        async with s.http.get(s.public + "/notices") as r:
            text = await r.text()
        assert "（第0町、第1町" in text and "第7町<details" in text
        assert "<summary>ほか 23 か所</summary>第8町、" in text and "第30町</details>" in text
