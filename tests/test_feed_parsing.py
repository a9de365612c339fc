"""Parsers and normalisation on NTT-shaped fixtures: charsets, reports, statuses, times,
prefectures, and revision hashes that ignore what a reader would not notice."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from jpixd.feeds.charset import decode
from jpixd.feeds.errors import ParseError
from jpixd.feeds.jptime import as_of, parse_span, parse_windows
from jpixd.feeds.normalise import (
    Draft,
    ItemError,
    canonical_url,
    classify,
    find_localities,
    normalise,
    revision_of,
)
from jpixd.feeds.parsers import json_feed, ntt_east, ntt_west, rss
from jpixd.model import JST, Change, Notice, NoticeKind, NoticeStatus
from jpixd.prefectures import in_text
from tests.feedfixtures import (
    EastRow,
    RssItem,
    atom,
    east_page,
    json_notices,
    rdf,
    rss2,
    west_construction_detail,
    west_failure_detail,
)

REF = datetime(2026, 11, 28, 15, 0, tzinfo=JST)
WEST = "https://www.example.ntt-west.jp/info/rss"


def jst(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=JST)


def notices_of(drafts: list[Draft], source: str = "s", carrier: str = "west") -> list[Notice]:
    return [normalise(d, source=source, carrier=carrier, ref=REF) for d in drafts]


# ---------------------------------------------------------------- times


@pytest.mark.parametrize(("text", "start", "end"), [
    ("2026年12月3日(木) 0:00～6:00", jst(2026, 12, 3, 0), jst(2026, 12, 3, 6)),
    ("令和8年12月3日（木）23時30分～翌5時00分", jst(2026, 12, 3, 23, 30), jst(2026, 12, 4, 5)),
    ("１２月３日（木）２３：００〜５：００", jst(2026, 12, 3, 23), jst(2026, 12, 4, 5)),
    ("2026年12月3日 22:00～24:00", jst(2026, 12, 3, 22), jst(2026, 12, 4, 0)),
    ("2026/12/03 23:00～2026/12/04 05:00", jst(2026, 12, 3, 23), jst(2026, 12, 4, 5)),
    ("2026年12月3日(木) 0:00～12月4日(金) 6:00", jst(2026, 12, 3, 0), jst(2026, 12, 4, 6)),
    ("1月5日(火) 1:00～3:00", jst(2027, 1, 5, 1), jst(2027, 1, 5, 3)),  # next year
    ("発生日時：2026年11月28日(土) 14時05分頃", jst(2026, 11, 28, 14, 5), None),
    ("第4報（16時30分現在） 2026年12月1日 1:00~2:00", jst(2026, 12, 1, 1), jst(2026, 12, 1, 2)),
    # Issue 11: 午前/午後, a day-only end, 平成, 頃, 未定, 「16時30現在」 (no 分) as as-of.
    ("9月11日午後11時～翌午前5時", jst(2026, 9, 11, 23), jst(2026, 9, 12, 5)),
    ("9月11日午前7時", jst(2026, 9, 11, 7), None),
    ("12月3日(木)23時00分～4日(金)5時00分", jst(2026, 12, 3, 23), jst(2026, 12, 4, 5)),
    ("平成23年3月26日(土)午前0時より", jst(2011, 3, 26, 0), None),
    ("12月3日 10時頃～未定", jst(2026, 12, 3, 10), None),
    ("（16時30現在）12月3日 1:00～2:00", jst(2026, 12, 3, 1), jst(2026, 12, 3, 2)),
])
def test_japanese_time_forms(text: str, start: datetime, end: datetime | None) -> None:
    span = parse_span(text, REF)
    assert span is not None and span.start == start and span.end == end


@pytest.mark.parametrize("text", ["第4報（16時30分現在）", "約1.5万回線", "ひかり電話：約1万回線",
                                  "", "地震発生当初より", "16時30現在", "0001年1月1日",
                                  "9999年12月31日 24:00"])
def test_no_time_where_there_is_none(text: str) -> None:
    assert parse_span(text, REF) is None


def test_several_windows_each_night_and_a_reserve_day() -> None:
    windows = parse_windows("12月3日(木)・4日(金)の0時00分～6時00分 予備日：12月7日(月) "
                            "0:00～6:00", REF)
    assert [(w.start, w.end, w.reserve) for w in windows] == [
        (jst(2026, 12, 3, 0), jst(2026, 12, 3, 6), False),
        (jst(2026, 12, 4, 0), jst(2026, 12, 4, 6), False),
        (jst(2026, 12, 7, 0), jst(2026, 12, 7, 6), True)]
    each = parse_windows("12月3日(木)～5日(土)の各日 0:00～6:00", REF)
    assert [w.start.day for w in each] == [3, 4, 5]
    assert as_of("第4報（16時30現在）", REF) == jst(2026, 11, 28, 16, 30)


# ---------------------------------------------------------------- prefectures


@pytest.mark.parametrize(("text", "codes"), [
    ("東京都、神奈川県の一部", ("13", "14")),
    ("大阪府大阪市北区、都島区の各一部", ("27",)),
    ("京都府", ("26",)),
    ("東京都", ("13",)),  # 京都 inside 東京都 is not 京都府
    ("北海道勇払郡厚真町", ("01",)),
    ("厚真町、むかわ町の各一部", ("01",)),  # implied by the towns
    ("府中市の一部", ()),  # 東京都 or 広島県: ambiguous, so nothing
    ("名古屋市中区", ("23",)),
])
def test_prefectures_in_text(text: str, codes: tuple[str, ...]) -> None:
    assert in_text(text) == codes


def test_localities() -> None:
    assert find_localities("北海道厚真町、むかわ町、安平町の各一部") == (
        "厚真町", "むかわ町", "安平町")


# ---------------------------------------------------------------- NTT West


def west_item(title: str, link: str = "https://www.example.ntt-west.jp/info/f/20261128-01.html",
              **kw: str) -> RssItem:
    return RssItem(title=title, link=link, **kw)


def test_ntt_west_failure_reports_and_recovery_in_shift_jis() -> None:
    feed = rss2([west_item("【故障】大阪府の一部地域で"
                           "フレッツ光ネクストがご利用しづらい状況について（第2報）",
                           description="現在、復旧に向け対応中です。")], encoding="cp932")
    text, codec = decode(feed)
    assert codec == "cp932"
    [draft] = ntt_west.parse(text, url=WEST).drafts
    page = west_failure_detail(
        title="大阪府の一部地域でフレッツ光ネクストがご利用しづらい状況について", report=2,
        as_of="16時30分", occurred="2026年11月28日（土）14時05分頃",
        area="大阪府大阪市北区、都島区の各一部",
        services=["フレッツ光ネクスト：約1.5万回線", "ひかり電話：約1万回線"],
        measures="原因を調査中です。復旧見込は未定です。")
    detail_text, _ = decode(page)
    n = normalise(ntt_west.detail(detail_text, draft), source="west", carrier="west", ref=REF)
    assert n.kind == NoticeKind.FAILURE and n.status == NoticeStatus.OCCURRED
    assert n.title == "大阪府の一部地域でフレッツ光ネクストがご利用しづらい状況について"
    assert n.report_number == 2
    assert n.starts_at == jst(2026, 11, 28, 14, 5) and n.ends_at is None
    assert n.prefectures == ("27",)
    assert n.localities == ("大阪市北区", "都島区")
    assert n.services == ("フレッツ光ネクスト", "ひかり電話")
    assert n.external_id == "https://www.example.ntt-west.jp/info/f/20261128-01.html"

    recovered_page = west_failure_detail(
        title="大阪府の一部地域でフレッツ光ネクストがご利用しづらい状況について", report=3,
        as_of="18時30分", occurred="2026年11月28日（土）14時05分頃",
        area="大阪府大阪市北区、都島区の各一部",
        services=["フレッツ光ネクスト：約1.5万回線→回復", "ひかり電話：約1万回線→回復"],
        measures="設備を交換し、回復しました。", recovered="2026年11月28日（土）18時20分")
    text3, _ = decode(recovered_page)
    n3 = normalise(ntt_west.detail(text3, draft), source="west", carrier="west", ref=REF)
    assert n3.status == NoticeStatus.RECOVERED and n3.report_number == 3
    assert n3.ends_at == jst(2026, 11, 28, 18, 20)
    assert classify(n, n3) == Change.RECOVER
    assert n3.services == n.services  # 「→回復」 is not part of the service name


def test_ntt_west_construction_and_its_cancellation() -> None:
    feed = rss2([west_item("【工事】兵庫県の一部地域における通信設備の工事について",
                           link="https://www.example.ntt-west.jp/info/c/1203.html")])
    [draft] = ntt_west.parse(feed.decode(), url=WEST).drafts
    page = west_construction_detail(
        title="兵庫県の一部地域における通信設備の工事について", when="2026年12月3日(木) 0:00～6:00",
        area="兵庫県神戸市中央区の一部", services=["フレッツ光ネクスト", "ひかり電話"],
        content="工事に伴い、数分程度の通信断（瞬断）が数回発生します。")
    n = normalise(ntt_west.detail(decode(page)[0], draft), source="w", carrier="west", ref=REF)
    assert (n.kind, n.status) == (NoticeKind.CONSTRUCTION, NoticeStatus.SCHEDULED)
    assert (n.starts_at, n.ends_at) == (jst(2026, 12, 3, 0), jst(2026, 12, 3, 6))
    assert n.prefectures == ("28",)
    cancelled = west_construction_detail(
        title="兵庫県の一部地域における通信設備の工事について", when="2026年12月3日(木) 0:00～6:00",
        area="兵庫県神戸市中央区の一部", services=["フレッツ光ネクスト", "ひかり電話"],
        content="都合により、本工事は中止となりました。", status="中止")
    c = normalise(ntt_west.detail(decode(cancelled)[0], draft), source="w", carrier="west",
                  ref=REF)
    assert c.status == NoticeStatus.CANCELLED
    assert classify(n, c) == Change.CANCEL


def test_ntt_west_detail_page_without_fields_is_a_parse_error() -> None:
    draft = Draft(external_id="x", title="【故障】…", url="https://example.jp/x")
    with pytest.raises(ParseError, match="no field table"):
        ntt_west.detail("<html><body><p>メンテナンス中</p></body></html>", draft)


# ---------------------------------------------------------------- NTT East


def test_ntt_east_page_in_shift_jis() -> None:
    page = east_page(
        {"東京都": [EastRow("E-1201", "2026年12月3日(木) 0:00～6:00", "新宿区西新宿の一部"),
                    EastRow("E-1202", "2026年12月5日(土) 1:00～5:00", "渋谷区の一部",
                            status="中止")],
         "北海道": [EastRow("E-1203", "12月8日(火) 2:00～4:00", "札幌市中央区の一部",
                            services="フレッツ光クロス")]},
        {"宮城県": [EastRow("F-0001", "2026年11月28日 9時10分頃", "仙台市青葉区の一部",
                            content="光アクセス装置の故障", status="発生中")]})
    result = ntt_east.parse(decode(page)[0], url="https://flets.example/const2/")
    assert result.errors == []
    ns = notices_of(result.drafts, carrier="east")
    by_id = {n.external_id: n for n in ns}
    assert set(by_id) == {"E-1201", "E-1202", "E-1203", "F-0001"}
    e1 = by_id["E-1201"]
    assert (e1.kind, e1.status, e1.prefectures) == (NoticeKind.CONSTRUCTION,
                                                     NoticeStatus.SCHEDULED, ("13",))
    assert (e1.starts_at, e1.ends_at) == (jst(2026, 12, 3, 0), jst(2026, 12, 3, 6))
    assert e1.services == ("フレッツ光ネクスト", "ひかり電話")
    assert by_id["E-1202"].status == NoticeStatus.CANCELLED
    assert by_id["E-1203"].prefectures == ("01",)
    assert by_id["E-1203"].services == ("フレッツ光クロス",)
    f = by_id["F-0001"]
    assert (f.kind, f.status, f.prefectures) == (NoticeKind.FAILURE, NoticeStatus.OCCURRED,
                                                 ("04",))


def test_ntt_east_tolerates_moved_columns_and_quarantines_a_bad_row() -> None:
    page = east_page({"千葉県": [EastRow("E-9", "2026年12月9日 1:00～3:00", "千葉市の一部"),
                                EastRow("E-10", "", "")]}, {}, column_order="moved")
    result = ntt_east.parse(decode(page)[0], url="https://flets.example/")
    [n] = notices_of(result.drafts, carrier="east")
    assert n.external_id == "E-9" and n.prefectures == ("12",)
    assert n.starts_at == jst(2026, 12, 9, 1)
    [err] = result.errors
    assert err.ref == "E-10" and "neither a date" in err.reason and "<tr>" in err.payload


def test_ntt_east_page_without_tables_is_an_error_unless_it_says_there_are_none() -> None:
    with pytest.raises(ParseError, match="layout"):
        ntt_east.parse("<html><body><h1>メンテナンスのお知らせ</h1></body></html>", url="u")
    empty = "<html><body><h2>工事情報</h2><p>現在、工事情報はありません。</p></body></html>"
    assert ntt_east.parse(empty, url="u").drafts == []


# ---------------------------------------------------------------- generic feeds


def test_rss1_rdf_in_euc_jp() -> None:
    feed = rdf([RssItem("【工事】広島県の一部地域における工事のお知らせ "
                        "2026年12月10日(木) 1:00〜4:00",
                        "https://example.jp/c/1")], encoding="euc_jp")
    text, codec = decode(feed)
    assert codec == "euc_jp"
    [n] = notices_of(rss.parse(text, url="https://example.jp/rss").drafts)
    assert n.kind == NoticeKind.CONSTRUCTION and n.prefectures == ("34",)
    assert n.starts_at == jst(2026, 12, 10, 1)


def test_euc_jp_without_declaration_is_detected() -> None:
    feed = rss2([RssItem("【故障】福岡県でひかり電話がご利用しづらい状況について", "https://e.jp/1")],
                encoding="euc_jp", declared="x-unknown")
    text, codec = decode(feed)
    assert codec == "euc_jp" and "福岡県" in text


def test_a_lying_charset_header_is_not_trusted() -> None:
    feed = rss2([RssItem("【故障】沖縄県の一部で障害", "https://e.jp/2")], encoding="cp932")
    text, codec = decode(feed, header_charset="utf-8")
    assert codec == "cp932" and "沖縄県" in text


def test_atom_with_categories_in_titles() -> None:
    feed = atom([RssItem("【回復】静岡県の一部地域で"
                         "フレッツ光ネクストがご利用しづらい状況について（回復）",
                         "https://e.jp/f/9",
                         "2026年11月28日 10時00分頃に発生した故障は回復しました。")])
    [n] = notices_of(rss.parse(feed.decode(), url="https://e.jp/atom").drafts)
    assert (n.kind, n.status, n.prefectures) == (NoticeKind.FAILURE, NoticeStatus.RECOVERED,
                                                 ("22",))


def test_an_item_without_a_kind_word_is_refused_by_name() -> None:
    draft = Draft(external_id="x", title="お知らせ")
    with pytest.raises(ItemError, match="cannot tell whether it is construction"):
        normalise(draft, source="s", carrier="east", ref=REF)


def test_json_feed_and_its_bad_items() -> None:
    body = json_notices([
        {"id": "J1", "kind": "failure", "status": "occurred", "title": "東京都で故障",
         "starts_at": "2026-11-28T09:10:00+09:00", "prefectures": ["東京都", "12"],
         "services": ["フレッツ光ネクスト"], "report_number": 1},
        {"id": "J2", "title": ""},
        {"kind": "failure", "title": "no id"},
        {"id": 3, "kind": "construction", "title": "工事", "starts_at": "tomorrow"},
    ])
    result = json_feed.parse(body.decode(), url="file:///x.json")
    [n] = notices_of(result.drafts, carrier="east")
    assert n.prefectures == ("12", "13") and n.report_number == 1
    assert n.starts_at == jst(2026, 11, 28, 9, 10)
    assert [(e.ref, e.reason) for e in result.errors] == [
        ("J2", "has no title"), ("notices[2]", "has no id"),
        ("3", "starts_at: 'tomorrow' is not an ISO 8601 time")]
    with pytest.raises(ParseError):
        json_feed.parse('{"items": []}', url="x")


# ---------------------------------------------------------------- revisions


def test_revision_ignores_whitespace_ordering_and_tracking() -> None:
    base = Draft(external_id="1", title="【工事】東京都、神奈川県の一部で工事",
                 body="工事のお知らせ\n\n設備更改", url="https://e.jp/c/1?id=5",
                 area_text="東京都、神奈川県の一部", services=("ひかり電話", "フレッツ光ネクスト"))
    same = replace(base, title="  【工事】東京都、神奈川県の一部で工事 ",
                   body="工事のお知らせ \n\n\n  設備更改  ", url="https://E.jp/c/1?utm_source=x&id=5",
                   area_text="神奈川県、東京都の一部",
                   services=("フレッツ光ネクスト", "ひかり電話"))
    a = normalise(base, source="s", carrier="east", ref=REF)
    b = normalise(same, source="s", carrier="east", ref=REF)
    assert revision_of(a) == revision_of(b)
    moved = normalise(replace(base, url="https://e.jp/c/1?id=6"), source="s", carrier="east",
                      ref=REF)
    assert revision_of(moved) != revision_of(a) and classify(a, moved) == Change.SILENT
    changed = normalise(replace(base, body="工事のお知らせ\n設備更改（時間変更）"), source="s",
                        carrier="east", ref=REF)
    assert classify(a, changed) == Change.UPDATE


def test_canonical_url() -> None:
    assert canonical_url("/f/1?b=2&utm_medium=rss&a=1#top", "https://Example.jp/x") == \
        "https://example.jp/f/1?a=1&b=2"


def test_a_withdrawn_notice_that_comes_back_recovered_is_a_recovery() -> None:
    """Back on its page as it was is silent; back with a recovery is news."""
    occurred = Notice(source="s", external_id="x", carrier="east", kind=NoticeKind.FAILURE,
                      status=NoticeStatus.OCCURRED, title="東京都で故障")
    withdrawn = replace(occurred, status=NoticeStatus.WITHDRAWN)
    assert classify(withdrawn, occurred) == Change.RESTORE
    assert classify(withdrawn, replace(occurred, status=NoticeStatus.RECOVERED)) == \
        Change.RECOVER
    assert classify(withdrawn, replace(occurred, status=NoticeStatus.PARTIALLY_RECOVERED)) \
        == Change.UPDATE


@pytest.mark.parametrize(("title", "kind"), [
    ("工事に伴いフレッツ光がご利用できない時間帯について", NoticeKind.CONSTRUCTION),
    ("通信設備の工事に伴うサービスへの影響について", NoticeKind.CONSTRUCTION),
    ("フレッツ光がご利用しづらい状況について", NoticeKind.FAILURE),
    ("障害発生に伴う緊急メンテナンスについて", NoticeKind.FAILURE),
    ("台風15号の影響による通信サービスへの影響について", NoticeKind.FAILURE),
])
def test_a_construction_notice_that_describes_its_effect_is_still_construction(
        title: str, kind: NoticeKind) -> None:
    """A false 【故障】 for planned work misleads as much as a false 【回復】."""
    draft = Draft(external_id="x", title=title)
    assert normalise(draft, source="s", carrier="east", ref=REF).kind == kind
