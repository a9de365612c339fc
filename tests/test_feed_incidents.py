"""One notice per incident, as NTT really reports: the 2023-04-03 outage as successive
polls of one source (list rows that change, and 第N報 pages at new URLs), a page that
changes to an unknown layout, and status words that never claim a recovery that did not
happen (generated sentences)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from jpixd.feeds.parsers import rss
from jpixd.feeds.status import judge
from jpixd.mail.render import Renderer
from jpixd.model import Change, NoticeKind, NoticeStatus, Subscriber, notice_from_json
from tests.conftest import make_config
from tests.feedfixtures import RssItem, rss2
from tests.feedharness import T0, Harness
from tests.feedserver import Page
from tests.test_feed_poller import source

CORPUS = Path(__file__).parent / "corpus"


def corpus(name: str) -> Page:
    return Page((CORPUS / name).read_bytes(), content_type="text/html")


async def east_polls(h: Harness, path: str, pages: str) -> list[dict[str, int]]:
    """Three successive polls of one NTT East source, 80 minutes apart, each serving the
    next corpus page; what each poll counted."""
    p = h.poller(source(h.server, path, kind="ntt-east", carrier="east",
                        send_on_first_poll=True))
    counts = []
    for poll in (1, 2, 3):
        h.server.pages[path] = corpus(pages.format(poll))
        counts.append((await p.poll(p.sources["feed"])).counts)
        h.advance(minutes=80)
    return counts


async def subjects(h: Harness, tmp_path: Path, notice_id: int) -> list[str]:
    """The subject each mailed revision would carry, as a subscriber reads it."""
    cfg = make_config(tmp_path, mail={"from": "notice@example.jp"})
    renderer = Renderer(cfg.mail, b"key" * 11)
    sub = Subscriber(email="noc@isp.example.jp", id=1)
    out = []
    for rev in await h.store.revisions(notice_id):
        if rev.mailed:
            subject, _ = renderer.texts(notice_from_json(rev.content), rev.change, sub)
            out.append(subject)
    return out


async def test_the_east_outage_as_changing_list_rows_is_one_notice(h: Harness,
                                                                 tmp_path: Path) -> None:
    saitama = await h.store.create_subscriber(
        Subscriber(email="saitama@isp.example.jp", prefectures=("11",),
                   services=("フレッツ光",)), T0)
    changes = await east_polls(h, "/east", "east-failure-20230403-poll{}.html")
    assert changes == [{"new": 1}, {"update": 1}, {"recover": 1}]
    items, total = await h.store.list_notices()
    assert total == 1
    [n] = items
    assert n.notice.status == NoticeStatus.RECOVERED and len(n.notice.prefectures) == 6
    revs = await h.store.revisions(n.id)
    assert [(r.change, r.content["status"]) for r in revs] == [
        (Change.NEW, "occurred"), (Change.UPDATE, "partially_recovered"),
        (Change.RECOVER, "recovered")]
    got = await subjects(h, tmp_path, n.id)
    assert "【回復】" not in got[0] + got[1] and "【更新】" in got[1]
    assert got[2].startswith("【故障】【回復】") and got[2].count("【") == 2
    # One mail per subscriber per meaningful revision; the Saitama subscriber filtering
    # on フレッツ光 hears from the moment the area reaches Saitama, recovery included.
    deliveries, _ = await h.store.list_deliveries(limit=100)
    per_sub: dict[int, list[int | None]] = {}
    for d in deliveries:
        per_sub.setdefault(d.subscriber_id, []).append(d.revision_id)
    assert sorted(len(v) for v in per_sub.values()) == [2, 3]
    assert len(per_sub[saitama.id or 0]) == 2


async def test_the_east_reports_at_new_urls_are_one_notice(h: Harness, tmp_path: Path) -> None:
    for k in (1, 2, 3):  # the list links them relatively, as the corpus page does
        h.server.pages[f"/east-report-20230403-{k}.html"] = corpus(
            f"east-report-20230403-{k}.html")
    counts = await east_polls(h, "/reports", "east-reports-20230403-poll{}.html")
    # 第2報 and 第3報 continue 第1報; the older reports still listed change nothing.
    assert counts == [{"new": 1}, {"update": 1, "unchanged": 1},
                      {"recover": 1, "unchanged": 2}]
    items, total = await h.store.list_notices()
    assert total == 1 and items[0].notice.report_number == 3
    got = await subjects(h, tmp_path, items[0].id)
    title = "フレッツ光等の通信サービスがご利用しづらい状況について"
    assert got == [f"【故障】【第1報】{title}", f"【故障】【更新】【第2報】{title}",
                   f"【故障】【回復】【第3報】{title}"]


async def test_the_west_outage_recovers_once(h: Harness) -> None:
    for k in (1, 2):
        h.server.pages[f"/d/west-detail-20230403-{k}.html"] = Page(
            (CORPUS / f"west-detail-20230403-{k}.html").read_bytes(), content_type="text/html")
    p = h.poller(source(h.server, "/west", kind="ntt-west", send_on_first_poll=True))
    src = p.sources["feed"]
    base = "https://www.info-construction.ntt-west.co.jp/info-report/detail/"
    for poll in (1, 2):
        feed = (CORPUS / f"west-rss-20230403-poll{poll}.xml").read_bytes()
        h.server.pages["/west"] = Page(feed.replace(base.encode(), h.server.url("/d/").encode()))
        await p.poll(src)
        h.advance(minutes=80)
    items, total = await h.store.list_notices()
    # Whether NTT West adds a page per report is not known: here it did (…-1, …-2).
    assert total == 1 and items[0].notice.status == NoticeStatus.RECOVERED
    revs = await h.store.revisions(items[0].id)
    assert [r.change for r in revs] == [Change.NEW, Change.RECOVER]


async def test_a_page_in_an_unknown_layout_keeps_notices_and_mails_nothing(h: Harness) -> None:
    p = h.poller(source(h.server, "/east", kind="ntt-east", carrier="east",
                        send_on_first_poll=True))
    src = p.sources["feed"]
    h.server.pages["/east"] = corpus("east-failure-20230403-poll1.html")
    await p.poll(src)
    before = (await h.store.list_deliveries(limit=1))[1]
    h.server.pages["/east"] = corpus("east-redesigned.html")
    report = await p.poll(src)
    assert report.result == "layout_changed"
    assert h.metric("jpixd_feed_polls_total", source="feed", result="layout_changed") == 1
    st_ = await h.store.source_state("feed")
    assert st_.last_result == "layout_changed" and st_.layout_warning
    items, _ = await h.store.list_notices()
    assert [n.notice.status for n in items] == [NoticeStatus.OCCURRED]  # not withdrawn
    assert (await h.store.list_deliveries(limit=1))[1] == before
    # A page that used to yield rows and now yields none without a word is no better.
    h.server.pages["/east"] = Page("<html><body><h2>故障情報</h2><table><tr><th>日時</th>"
                                   "<th>エリア</th></tr></table></body></html>".encode(),
                                   content_type="text/html")
    assert (await p.poll(src)).result == "layout_changed"
    # Back to the page it read: the validators are still the last good page's, so the
    # server says 304; the warning clears, and so does last_error.
    h.server.pages["/east"] = corpus("east-failure-20230403-poll1.html")
    assert (await p.poll(src)).result == "not_modified"
    st_ = await h.store.source_state("feed")
    assert st_.layout_warning is None and st_.last_error is None


def test_jpixd_parse_prints_what_a_saved_page_yields() -> None:
    page = CORPUS / "east-construction-list-sjis.html"
    out = subprocess.run([sys.executable, "-m", "jpixd", "parse", "--kind", "ntt-east",
                          str(page), "--now", "2026-11-28T15:00:00+09:00"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "cancelled" in out.stdout and "postponed" in out.stdout
    assert "(予備日)" in out.stdout and '"layout_warning": null' in out.stdout
    # NTT's own time, from a page's 掲載日時 column, is in the person's table too.
    dated = subprocess.run([sys.executable, "-m", "jpixd", "parse", "--kind", "ntt-east",
                            str(CORPUS / "east-mixed-kubun-eucjp.html")],
                           capture_output=True, text=True, timeout=60, check=False)
    assert "ntt_time=2026-11-20 10:00" in dated.stdout.split("\n\n{")[0]
    bad = subprocess.run([sys.executable, "-m", "jpixd", "parse", "--kind", "ntt-east",
                          str(CORPUS / "east-redesigned.html")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1 and "LAYOUT" in bad.stdout


# ------------------------------------------------------------ generated sentences

PLACES = st.sampled_from(["", "北海道エリアは", "東京都の一部で", "大阪府、滋賀県の一部エリアでは",
                          "一部のお客さまで", "ひかり電話は"])
NOT_YET = st.sampled_from([
    "復旧の見通しは立っておりません", "回復次第お知らせします", "早期復旧に努めております",
    "復旧にあたっております", "復旧作業中です", "復旧見込みは未定です",
    "回復の目途は立っておりません", "復旧に向けて対応しております", "回復しておりません",
    "回復していません", "回復しましたらお知らせします", "引き続きご利用しづらい状況です",
    "復旧時期は18時頃の見込みです", "回復に時間を要しております", "回復予定は未定です",
    "復旧完了見込みは18時頃です", "回復済みの見込みです", "その他のエリアでは引き続き作業中です",
])
RECOVERED = st.sampled_from(["回復しました", "復旧いたしました", "→回復"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(PLACES, NOT_YET), min_size=1, max_size=4), PLACES, RECOVERED,
       st.booleans())
def test_no_not_yet_phrasing_is_ever_a_recovery(clauses: list[tuple[str, str]], place: str,
                                                 word: str, with_partial: bool) -> None:
    text = "。".join(p + w for p, w in clauses) + "。"
    assert judge(NoticeKind.FAILURE, [("措置状況", text)]).status != NoticeStatus.RECOVERED
    if with_partial:  # some of it recovered, the rest not yet: partly, never wholly
        mixed = f"{place}{word}。{text}"
        got = judge(NoticeKind.FAILURE, [("措置状況", mixed)]).status
        assert got == NoticeStatus.PARTIALLY_RECOVERED
        # The same in one sentence: 「…回復しましたが、…復旧作業中です。」
        one = f"{place}{word}が、{text}"
        assert judge(NoticeKind.FAILURE, [("措置状況", one)]).status != \
            NoticeStatus.RECOVERED


async def test_construction_gone_before_its_start_is_withdrawn_and_its_reminders_held(
        h: Harness) -> None:
    work = RssItem("【工事】大阪府の一部地域における工事のお知らせ", "https://example.jp/c/1",
                   "工事日時 2026年12月3日(木) 0:00～6:00")
    h.server.pages["/rss"] = Page(rss2([work]))
    p = h.poller(source(h.server, send_on_first_poll=True))
    src = p.sources["feed"]
    assert (await p.poll(src)).counts == {"new": 1}
    reminders, _ = await h.store.list_deliveries(limit=10)
    assert [d.purpose for d in reminders].count("reminder") == 1
    h.server.pages["/rss"] = Page(rss2([]))
    assert (await p.poll(src)).counts == {"withdraw": 1}
    items, _ = await h.store.list_deliveries(limit=10)
    held = [d for d in items if d.purpose == "reminder"]
    assert [(str(d.state), d.reason) for d in held] == [("skipped", "notice withdrawn")]
    [n], _ = await h.store.list_notices(status="withdrawn")
    assert h.metric("jpixd_notices_total", source="feed", kind="construction",
                    change="withdraw") == 1
    assert [r.mailed for r in await h.store.revisions(n.id)] == [True, False]


def test_a_file_link_keeps_its_three_slashes() -> None:
    text = rss2([RssItem("【故障】京都府の一部", "file:///srv/ntt/detail/1.html")]).decode()
    [d] = rss.parse(text, url="file:///srv/ntt/rss.xml").drafts
    assert d.url == "file:///srv/ntt/detail/1.html" and d.external_id == d.url


async def test_words_not_understood_keep_the_status_and_are_counted(h: Harness) -> None:
    item = RssItem("【故障】北海道、東京都の一部でご利用しづらい状況について",
                   "https://example.jp/f/1",
                   "北海道エリアは回復しました。その他エリアは復旧作業中です。")
    h.server.pages["/rss"] = Page(rss2([item]))
    p = h.poller(source(h.server, send_on_first_poll=True))
    src = p.sources["feed"]
    await p.poll(src)
    item.description = "復旧の状況は別途お知らせします。"
    h.server.pages["/rss"] = Page(rss2([item]))
    await p.poll(src)
    [n], _ = await h.store.list_notices()
    assert n.notice.status == NoticeStatus.PARTIALLY_RECOVERED
    assert h.metric("jpixd_feed_status_unrecognised_total", source="feed") == 1


async def test_a_report_after_the_page_went_empty_continues_the_incident(h: Harness) -> None:
    """A list that showed nothing for a poll between 第1報 and 第2報 withdraws the notice;
    the 第2報 still continues it (one incident, not an orphan and a new notice)."""
    for k in (1, 2):
        h.server.pages[f"/east-report-20230403-{k}.html"] = corpus(
            f"east-report-20230403-{k}.html")
    p = h.poller(source(h.server, "/reports", kind="ntt-east", carrier="east",
                        send_on_first_poll=True))
    src = p.sources["feed"]
    h.server.pages["/reports"] = corpus("east-reports-20230403-poll1.html")
    assert (await p.poll(src)).counts == {"new": 1}
    h.server.pages["/reports"] = corpus("east-empty.html")
    assert (await p.poll(src)).counts == {"withdraw": 1}
    h.server.pages["/reports"] = corpus("east-reports-20230403-poll2.html")
    assert (await p.poll(src)).counts == {"update": 1, "unchanged": 1}
    items, total = await h.store.list_notices()
    assert total == 1 and items[0].notice.status == NoticeStatus.PARTIALLY_RECOVERED
