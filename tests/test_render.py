"""Rendering: Japanese in ISO-2022-JP (7-bit, escapes closed at each line end) or UTF-8
when it must be, subjects per change, our headers, and no header injection."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from jpixd.mail.render import Renderer, body_text, check_unsubscribe_token, wrap
from jpixd.model import JST, Change, Notice, NoticeKind, NoticeStatus, Subscriber
from tests.conftest import make_config

NOW = datetime(2026, 11, 28, 16, 30, tzinfo=JST)
FAILURE = Notice(source="west", external_id="F1", carrier="west", kind=NoticeKind.FAILURE,
                 status=NoticeStatus.OCCURRED, report_number=2, prefectures=("13",),
                 title="東京都の一部でフレッツ光ネクストがご利用しづらい状況について",
                 body="原因を調査中です。", starts_at=datetime(2026, 11, 28, 14, 5, tzinfo=JST))
WORKS = Notice(source="east", external_id="C1", carrier="east", kind=NoticeKind.CONSTRUCTION,
               status=NoticeStatus.SCHEDULED, title="新宿区の一部における通信設備の工事",
               starts_at=datetime(2026, 12, 3, 0, 0, tzinfo=JST),
               ends_at=datetime(2026, 12, 3, 6, 0, tzinfo=JST))
SUB = Subscriber(id=7, email="noc@isp.example.jp", name="運用 太郎", organization="株式会社例")


def renderer(tmp_path: Path, **mail: object) -> Renderer:
    cfg = make_config(tmp_path, mail={"from": "notice@example.jp", "from_name": "工事・故障情報",
                                      "list_unsubscribe": "https://n.example.jp/unsubscribe",
                                      **mail})
    return Renderer(cfg.mail, b"key" * 11)


def parse(data: bytes) -> EmailMessage:
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_iso_2022_jp_by_default(tmp_path: Path) -> None:
    r = renderer(tmp_path).render(delivery_id=41, notice_id=9, notice=FAILURE,
                                  change=Change.UPDATE, sub=SUB, now=NOW)
    assert r.charset == "iso-2022-jp"
    assert r.data.isascii()  # 7-bit all through, headers included
    head, _, body = r.data.partition(b"\r\n\r\n")
    assert b"Content-Transfer-Encoding: 7bit" in head
    for line in body.split(b"\r\n"):
        if b"\x1b$B" in line:  # back to ASCII before every line break
            assert line.rfind(b"\x1b(B") > line.rfind(b"\x1b$B"), line
        assert len(line) <= 998
    msg = parse(r.data)
    assert msg["Subject"] == ("【故障】【第2報】東京都の一部で"
                              "フレッツ光ネクストがご利用しづらい状況について")
    assert msg["Message-ID"] == "<jpixd.41.9@example.jp>"
    assert msg["X-Jpixd-Delivery"] == "41"
    assert msg["From"].addresses[0].display_name == "工事・故障情報"
    assert msg["To"].addresses[0].display_name == "株式会社例 運用 太郎"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = msg["List-Unsubscribe"].split("token=")[1].rstrip(">")
    assert check_unsubscribe_token(b"key" * 11, token) == 7
    assert check_unsubscribe_token(b"other-key", token) is None
    text = msg.get_content()
    assert "原因を調査中です。" in text and "2026年11月28日(土) 14:05" in text


@pytest.mark.parametrize("odd", ["①", "㈱", "髙", "﨑", "Ⅲ"])
def test_text_outside_jis_x_0208_falls_back_to_utf8(tmp_path: Path, odd: str) -> None:
    n = replace(FAILURE, title=f"{odd} の一部で故障")
    r = renderer(tmp_path).render(delivery_id=1, notice_id=1, notice=n, change=Change.NEW,
                                  sub=SUB, now=NOW)
    assert r.charset == "utf-8"
    msg = parse(r.data)
    assert odd in msg["Subject"] and "?" not in msg["Subject"]


def test_wave_dash_and_half_width_kana_stay_in_iso_2022_jp(tmp_path: Path) -> None:
    # cp932 pages give U+FF5E for ～; JIS has U+301C. Half-width kana become full-width.
    n = replace(WORKS, body="0:00～6:00 ﾌﾚｯﾂ光ﾈｸｽﾄ")
    r = renderer(tmp_path).render(delivery_id=1, notice_id=1, notice=n, change=Change.NEW,
                                  sub=SUB, now=NOW)
    assert r.charset == "iso-2022-jp"
    assert "0:00〜6:00 フレッツ光ネクスト" in parse(r.data).get_content()


def test_a_half_width_kana_name_stays_in_iso_2022_jp(tmp_path: Path) -> None:
    """A name typed in half-width kana (an old system's export) becomes full-width in the
    To: header as in the greeting; it used to send the whole mail in UTF-8."""
    sub = replace(SUB, organization="ｶﾌﾞｼｷｶﾞｲｼｬﾚｲ", name="ｳﾝﾖｳ")
    r = renderer(tmp_path).render(delivery_id=1, notice_id=1, notice=WORKS,
                                  change=Change.NEW, sub=sub, now=NOW)
    assert r.charset == "iso-2022-jp"
    mail = parse(r.data)
    assert mail["To"].addresses[0].display_name == "カブシキガイシャレイ ウンヨウ"
    assert mail.get_content().startswith("カブシキガイシャレイ\r\nウンヨウ 様\r\n")


def test_utf8_by_choice(tmp_path: Path) -> None:
    r = renderer(tmp_path, charset="utf-8").render(delivery_id=1, notice_id=1, notice=WORKS,
                                                   change=Change.NEW, sub=SUB, now=NOW)
    assert r.charset == "utf-8" and parse(r.data)["Subject"].startswith("【工事】")


@pytest.mark.parametrize(("notice", "change", "subject"), [
    # A work leads with its time (reader review: a phone shows about 20 characters);
    # ～ arrives as JIS's 〜 in ISO-2022-JP.
    (WORKS, Change.NEW, "【工事】12/3(木) 00:00〜06:00 新宿区の一部における通信設備の工事"),
    (WORKS, Change.UPDATE,
     "【工事】【更新】12/3(木) 00:00〜06:00 新宿区の一部における通信設備の工事"),
    (WORKS, Change.CANCEL,
     "【工事】【中止】12/3(木) 00:00〜06:00 新宿区の一部における通信設備の工事"),
    (WORKS, Change.COMPLETE,
     "【工事】【完了】12/3(木) 00:00〜06:00 新宿区の一部における通信設備の工事"),
    (WORKS, Change.REMINDER,
     "【工事】【リマインド】12/3(木) 00:00〜06:00 新宿区の一部における通信設備の工事"),
    (replace(WORKS, starts_at=datetime(2026, 12, 6, 23, 0, tzinfo=JST),
             ends_at=datetime(2026, 12, 7, 5, 0, tzinfo=JST)), Change.NEW,
     "【工事】12/6(日) 23:00〜翌05:00 新宿区の一部における通信設備の工事"),
    (replace(WORKS, ends_at=None), Change.NEW,
     "【工事】12/3(木) 00:00 新宿区の一部における通信設備の工事"),
    (FAILURE, Change.RECOVER,
     "【故障】【回復】【第2報】東京都の一部でフレッツ光ネクストがご利用しづらい状況について"),
])
def test_subjects(tmp_path: Path, notice: Notice, change: Change, subject: str) -> None:
    r = renderer(tmp_path).render(delivery_id=1, notice_id=1, notice=notice, change=change,
                                  sub=SUB, now=NOW)
    assert parse(r.data)["Subject"] == subject


def test_a_title_cannot_inject_a_header(tmp_path: Path) -> None:
    evil = replace(FAILURE, title="故障\r\nBcc: all@example.com\r\nX-Evil: 1")
    evil_sub = replace(SUB, name="太郎\r\nCc: leak@example.com")
    r = renderer(tmp_path).render(delivery_id=1, notice_id=1, notice=evil, change=Change.NEW,
                                  sub=evil_sub, now=NOW)
    head = r.data.partition(b"\r\n\r\n")[0].decode("ascii")
    names = [ln.split(":", 1)[0] for ln in head.split("\r\n") if ln and not ln[0].isspace()]
    assert names.count("Subject") == 1
    assert not {"Bcc", "Cc", "X-Evil"} & set(names)
    msg = parse(r.data)
    assert "Bcc: all@example.com" in msg["Subject"]  # harmless text inside the subject


def test_templates_can_be_overridden(tmp_path: Path) -> None:
    tdir = tmp_path / "templates"
    tdir.mkdir()
    (tdir / "body.txt.j2").write_text("{{ subscriber.name }}様\n独自の本文: {{ notice.title }}\n",
                                      encoding="utf-8")
    r = renderer(tmp_path, templates_dir=str(tdir)).render(
        delivery_id=1, notice_id=1, notice=WORKS, change=Change.NEW, sub=SUB, now=NOW)
    msg = parse(r.data)
    assert msg.get_content().replace("\r\n", "\n") == \
        "運用 太郎様\n独自の本文: 新宿区の一部における\n通信設備の工事\n"  # wrapped as ours
    assert msg["Subject"].startswith("【工事】")  # the subject template is still ours


def test_a_list_is_broken_between_its_items() -> None:
    """Issue 25 part 4: a locality list wraps after an item's 「、」, never inside a name,
    and a line never starts with 「、」; prose keeps its phrase breaks."""
    # Phrases alone broke this one as 「…、大阪/狭山市、…」.
    places = ["ひかり電話", "習志野市", "大阪市西区", "堺市中区", "大阪市福島区", "大阪狭山市",
              "大阪市此花区", "松原市", "大阪市港区", "市川市", "さいたま市浦和区", "川口市"]
    line = "■ " + "、".join(places)
    lines = wrap(line).split("\n")
    assert len(lines) > 1 and "".join(lines) == line
    assert all(text.endswith("、") for text in lines[:-1]), lines
    for place in places:
        assert any(place in text for text in lines), place
    # A list item longer than a line is still broken somewhere, between its phrases.
    long_item = "、".join(["非常に長い名前の地域" * 5, "短い", "短い"])
    assert all(len(text) <= 20 for text in wrap(long_item).split("\n"))


def test_wrap_counts_full_width_as_two_columns() -> None:
    line = "あ" * 50
    assert wrap(line).split("\n") == ["あ" * 20, "あ" * 20, "あ" * 10]
    assert wrap("https://example.jp/" + "a" * 200) == "https://example.jp/" + "a" * 200


# -- rendering once per notice -------------------------------------------------------

OVERRIDES = {
    "plain": ("{{ subscriber.organization }}\n{{ subscriber.name }} 様\n{{ notice.title }}\n",
              frozenset({"organization", "name"})),
    "filtered": ("{{ subscriber.name | upper }} 様\n", None),
    "branching": ("{% if subscriber.organization %}{{ subscriber.organization }}\n{% endif %}"
                  "{{ subscriber.name }} 様\n", None),
    "assigned": ("{% set s = subscriber %}{{ s.name }} 様\n", None),
    "included": ("{% include 'subject.txt.j2' %}\n{{ subscriber.name }}\n", None),
}


@pytest.mark.parametrize("kind", sorted(OVERRIDES))
def test_each_recipient_gets_what_a_full_render_gives(tmp_path: Path, kind: str) -> None:
    source, fields = OVERRIDES[kind]
    tdir = tmp_path / "templates"
    tdir.mkdir()
    (tdir / "body.txt.j2").write_text(source, encoding="utf-8")
    r = renderer(tmp_path, templates_dir=str(tdir))
    assert r._body.fields == fields  # cached only when the subscriber is plain output
    subs = [SUB, replace(SUB, id=8, organization="", name="髙橋"),
            replace(SUB, id=9, name="a\x00b {{ x }}", organization="ＡＢＣ㈱"),
            # Blank runs across a value's edge: such a recipient is rendered whole.
            replace(SUB, id=10, name="x\n\n\n\ny", organization="\x01"),
            replace(SUB, id=11, name="\n名前\n", organization="組織\n\n")]
    for change in (Change.NEW, Change.UPDATE):
        for sub in subs * 2:  # the second time from the cache
            fast = r.texts(FAILURE, change, sub)
            full = r._body.template.render({**r._context(FAILURE, change, False, "", None),
                                             "subscriber": r.recipient(sub)})
            assert fast[1] == wrap(re.sub(r"\n{3,}", "\n\n", body_text(full)).strip() + "\n")


def test_the_bundled_body_is_rendered_once_per_notice(tmp_path: Path) -> None:
    r = renderer(tmp_path)
    assert r._body.fields == frozenset({"addressee", "manage_url", "unsubscribe_url"})
    assert r._subject.fields == frozenset()
    a = r.texts(FAILURE, Change.NEW, SUB)[1]
    b = r.texts(FAILURE, Change.NEW, replace(SUB, organization="", name="髙橋"))[1]
    assert a.startswith("株式会社例\n運用 太郎 様\n")
    assert b.startswith("髙橋 様\n")  # no empty organisation line
    assert a.split("様\n", 1)[1] == b.split("様\n", 1)[1]
    # A subscriber who gave no name is not greeted with a lone 「様」 (reader review).
    c = r.texts(FAILURE, Change.NEW, replace(SUB, name=""))[1]
    d = r.texts(FAILURE, Change.NEW, replace(SUB, organization="", name=""))[1]
    assert c.startswith("株式会社例\nご担当者様\n") and d.startswith("ご担当者様\n")
    assert not any(line.strip() == "様" for line in (c + d).splitlines())


HOSTILE_TEXT = ("本文\u0000NUL\u001b$B\u001b(Bescape\u0007bell\u0008bs\r\nBcc: evil@x.jp\u2028"
                "\u0085詳細 https://example.jp/" + "a" * 3000 + " " + "長" * 3000)


@pytest.mark.parametrize("charset", ["iso-2022-jp", "utf-8"])
@pytest.mark.parametrize("change", [c for c in Change if c.mailed] + [Change.REMINDER])
def test_hostile_feed_text_through_every_template(tmp_path: Path, charset: str,
                                                  change: Change) -> None:
    """Security probe M4: whatever a feed sent, the mail is one any MTA accepts."""
    notice = replace(FAILURE, title="見出し\u0000\u001b" + "長" * 100_000, body=HOSTILE_TEXT,
                     localities=("町\u0007",), services=("サービス\u001b",))
    sub = replace(SUB, charset=charset)
    data = renderer(tmp_path).render(delivery_id=1, notice_id=1, notice=notice,
                                     change=change, sub=sub, now=NOW).data
    head = data.partition(b"\r\n\r\n")[0]
    assert len(head) < 8192  # the Subject is capped, not 428 KB of folded header
    for line in data.split(b"\r\n"):
        assert len(line) <= 998
        assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]", line), line[:80]
    text = parse(data).get_content()
    assert "\x1b" not in text and "\x00" not in text and "\x07" not in text
    assert "https://example.jp/" + "a" * 800 in text  # the URL is kept, on a line of its own
    msg = parse(data)
    assert len(msg["Subject"]) <= 200 and msg["Subject"].endswith("…")
    assert msg["Bcc"] is None


def test_times_are_shown_in_the_configured_timezone(tmp_path: Path) -> None:
    """Issue 13: `timezone` drove only the delivery windows; mail hard-coded JST."""
    cfg = make_config(tmp_path, mail={"from": "notice@example.jp"}, timezone="UTC")
    r = Renderer(cfg.mail, b"key" * 11, cfg.tz)
    mail = r.render(delivery_id=1, notice_id=1, notice=FAILURE, change=Change.NEW, sub=SUB,
                    now=NOW)
    msg = parse(mail.data)
    assert msg["Date"].endswith("+0000")
    assert "2026年11月28日(土) 05:05" in msg.get_content()  # 14:05 JST
    jst = renderer(tmp_path).render(delivery_id=1, notice_id=1, notice=FAILURE,
                                    change=Change.NEW, sub=SUB, now=NOW)
    assert "2026年11月28日(土) 14:05" in parse(jst.data).get_content()


def test_the_one_click_post_is_announced_for_https_links_only(tmp_path: Path) -> None:
    """RFC 8058 §3.1 (reader review §5): `List-Unsubscribe-Post` with an https link, not
    with an http one, whichever way the link is made ([mail] list_unsubscribe here)."""
    for base, post in (("https://n.example.jp/u", "List-Unsubscribe=One-Click"),
                       ("http://n.example.jp/u", None)):
        msg = parse(renderer(tmp_path, list_unsubscribe=base).render(
            delivery_id=1, notice_id=1, notice=FAILURE, change=Change.NEW, sub=SUB,
            now=datetime(2026, 12, 6, 3, 0, tzinfo=JST)).data)
        assert str(msg["List-Unsubscribe"]).startswith(f"<{base}?token=")
        assert msg["List-Unsubscribe-Post"] == post, base


def test_a_recovery_says_when_it_recovered_and_a_range_names_its_day_once(
        tmp_path: Path) -> None:
    """Reader review: a recovery mail put the recovery time under ■発生日時 with no
    ■回復日時, and a range repeated its date."""
    r = renderer(tmp_path)
    start = datetime(2026, 12, 6, 3, 0, tzinfo=JST)
    recovered = replace(FAILURE, status=NoticeStatus.RECOVERED, starts_at=start,
                        ends_at=datetime(2026, 12, 6, 5, 30, tzinfo=JST))
    body = r.texts(recovered, Change.RECOVER, SUB)[1]
    assert "■発生日時\n2026年12月6日(日) 03:00\n" in body
    assert "■回復日時\n2026年12月6日(日) 05:30\n（発生から2時間30分）\n" in body
    work = replace(recovered, kind=NoticeKind.CONSTRUCTION, status=NoticeStatus.SCHEDULED)
    assert "■工事日時\n2026年12月6日(日) 03:00 ～ 05:30\n" in r.texts(work, Change.NEW, SUB)[1]
    night = replace(work, starts_at=datetime(2026, 12, 6, 23, 0, tzinfo=JST),
                    ends_at=datetime(2026, 12, 7, 5, 0, tzinfo=JST))
    # The year once too; the end on a line of its own when the range is wider than a
    # phone's line, the break after 「～」.
    assert "2026年12月6日(日) 23:00 ～\n12月7日(月) 05:00\n" in r.texts(night, Change.NEW, SUB)[1]
    assert "■回復日時" not in r.texts(night, Change.NEW, SUB)[1]


def test_a_notice_mail_links_to_its_page_on_the_board(tmp_path: Path) -> None:
    """Reader review: the mail linked only to NTT's URL, never to jpixd's own page of the
    notice, which has its reports (経過)."""
    from datetime import timedelta

    from jpixd.web.links import LinkBuilder, Signer

    cfg = make_config(tmp_path, mail={"from": "notice@example.jp"})
    links = LinkBuilder("https://notice.example.jp", Signer(["k" * 32]),
                        confirm_ttl=timedelta(days=2), manage_ttl=timedelta(days=90))
    r = Renderer(cfg.mail, b"key" * 11, JST, links)
    now = datetime(2026, 12, 6, 4, 0, tzinfo=JST)
    body = r.texts(FAILURE, Change.NEW, SUB, now, notice_id=9)[1]
    assert "■経過と最新の状況\nhttps://notice.example.jp/notices/9\n" in body
    other = r.texts(FAILURE, Change.NEW, SUB, now, notice_id=10)[1]
    assert "/notices/10\n" in other and "/notices/9\n" not in other
    assert "■経過と最新の状況" not in renderer(tmp_path).texts(FAILURE, Change.NEW, SUB)[1]


def test_every_mail_names_whom_to_ask(tmp_path: Path) -> None:
    """Reader review: no operator contact in the mails. `[mail] contact`, one line."""
    contact = "例ネット株式会社 運用センター noc@example.jp 03-0000-0000"
    r = renderer(tmp_path, contact=contact)
    body = r.texts(FAILURE, Change.NEW, SUB)[1]
    # On lines of its own, broken at a space: the address and number whole.
    assert "\nお問い合わせ:\n例ネット株式会社 運用センター\nnoc@example.jp 03-0000-0000\n" in body
    assert "お問い合わせ" not in renderer(tmp_path).texts(FAILURE, Change.NEW, SUB)[1]
    from jpixd.config import ConfigError

    with pytest.raises(ConfigError, match=r"mail\.contact: must be one line"):
        renderer(tmp_path, contact="一行目\n二行目")
