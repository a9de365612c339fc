"""Every update says what changed (reader review, issue 25 part 3): 「内容が更新されました」
and the whole text again made the reader find the difference. Each revision carries its
changes; the mail lists them under ■変更点 and the notice page under each report."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

from jpixd.changes import what_changed
from jpixd.model import (
    JST,
    Changed,
    Notice,
    NoticeKind,
    NoticeStatus,
    Subscriber,
    notice_from_json,
    notice_to_json,
)
from tests.conftest import on_backend
from tests.webharness import body_of, site, write_feed

WORK = Notice(source="west", external_id="C1", carrier="west", kind=NoticeKind.CONSTRUCTION,
              status=NoticeStatus.SCHEDULED, title="大阪府の一部で設備工事",
              prefectures=("27",), localities=("大阪市中央区",),
              starts_at=datetime(2026, 12, 10, 2, 0, tzinfo=JST),
              ends_at=datetime(2026, 12, 10, 6, 0, tzinfo=JST), body="工事を行います。")


def test_each_change_in_the_words_the_mail_uses() -> None:
    moved = replace(WORK, status=NoticeStatus.POSTPONED,
                    starts_at=datetime(2026, 12, 17, 2, 0, tzinfo=JST),
                    ends_at=datetime(2026, 12, 17, 6, 0, tzinfo=JST),
                    localities=("大阪市北区", "大阪市中央区"), body="延期します。")
    assert what_changed(WORK, moved) == (
        Changed("状況", "予定", "延期"),
        Changed("工事日時", "12/10(木) 02:00～06:00", "12/17(木) 02:00～06:00"),
        Changed("地域の詳細", "大阪市中央区", "大阪市中央区、大阪市北区"),
        Changed("内容", "", "本文が更新されました（下記 ■内容）"))
    assert what_changed(WORK, replace(WORK, localities=("大阪市中央区",))) == ()
    failure = replace(WORK, kind=NoticeKind.FAILURE, status=NoticeStatus.OCCURRED,
                      ends_at=None)
    recovered = replace(failure, status=NoticeStatus.RECOVERED,
                        ends_at=datetime(2026, 12, 10, 4, 30, tzinfo=JST))
    assert what_changed(failure, recovered) == (
        Changed("状況", "発生中", "回復"),
        Changed("回復日時", "（なし）", "12/10(木) 04:30"))
    # Kept with the revision's content, and only there: the same notice otherwise.
    again = notice_from_json(notice_to_json(replace(recovered, changes=what_changed(
        failure, recovered))))
    assert again.changes == what_changed(failure, recovered)
    assert "changes" not in notice_to_json(recovered)


async def test_an_update_mail_and_the_notice_page_say_what_changed(
        tmp_path: Path, backend_url: str | None) -> None:
    async with site(tmp_path, **on_backend(backend_url)) as s:
        await s.rt.store.create_subscriber(
            Subscriber(email="noc@isp.example.jp", name="運用 太郎", carriers=("east",)),
            s.rt.clock())
        work = {"id": "C1", "kind": "construction", "title": "東京都の一部で設備工事",
                "prefectures": ["13"], "starts_at": "2026-12-24T01:00:00+09:00",
                "ends_at": "2026-12-24T05:00:00+09:00"}
        write_feed(tmp_path, [work])
        await s.poll()
        await s.send_all()
        write_feed(tmp_path, [{**work, "starts_at": "2026-12-24T02:00:00+09:00"}])
        report = await s.poll()
        assert report["changes"][0]["change"] == "update"
        await s.send_all()
        [first, update] = s.mails_to("noc@isp.example.jp")
        assert "■変更点" not in body_of(first)
        # As a mail client shows it: ～ arrives as ISO-2022-JP's 〜.
        body = body_of(update).replace("\r\n", "\n")
        # Each on one line of a phone's mail app (20 full-width characters).
        assert "■変更点\n・工事日時\n　変更前: 12/24(木) 01:00〜05:00\n" \
               "　変更後: 12/24(木) 02:00〜05:00\n" in body
        notice_id = report["changes"][0]["notice_id"]
        async with s.http.get(f"{s.public}/notices/{notice_id}") as r:
            page = await r.text()
        assert "<strong>工事日時</strong>: 12/24(木) 01:00～05:00 → 12/24(木) 02:00～05:00" \
            in page
        # Two reports, one title: written once in the 経過, on the first report's row.
        rows = page.replace("<wbr>", "").split('id="revisions"')[1].split("<tr>")[2:]
        assert [row.count("東京都の一部で設備工事") for row in rows] == [0, 1]
        # The feed's entry says it too (an RSS connector in Slack or Teams showed only a
        # new date), and so does the calendar event's description.
        async with s.http.get(f"{s.public}/notices.atom") as r:
            atom = await r.text()
        assert "<summary>変更点: 工事日時 12/24(木) 01:00～05:00 → 12/24(木) 02:00～05:00\n" \
            in atom
        async with s.http.get(f"{s.public}/notices.ics") as r:
            ics = (await r.text()).replace("\r\n ", "")
        assert "DESCRIPTION:変更点: 工事日時 12/24(木) 01:00～05:00 → " in ics
