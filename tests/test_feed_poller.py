"""The poller against a real feed server on loopback: baselines, updates, conditional GET,
redirects, backoff, limits, quarantine, NTT West detail pages, and feeds that reorder,
drop and bring back items without anyone getting mail twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from jpixd.config import SourceConfig
from jpixd.feeds.poller import PollReport
from jpixd.model import Change, DeliveryState, NoticeStatus
from jpixd.store import Store
from tests.feedfixtures import RssItem, rss2, west_failure_detail
from tests.feedharness import T0, Harness
from tests.feedserver import FeedServer, Page


def source(server: FeedServer, path: str = "/rss", **kw: Any) -> SourceConfig:
    base: dict[str, Any] = {"name": "feed", "kind": "rss", "url": server.url(path),
                            "carrier": "west", "interval": timedelta(seconds=60),
                            "timeout": timedelta(seconds=5)}
    base.update(kw)
    return SourceConfig(**base)


def item(n: int, extra: str = "") -> RssItem:
    return RssItem(f"【故障】大阪府の一部でひかり電話がご利用しづらい状況について（No.{n}）",
                   f"https://www.example.jp/f/{n}.html",
                   f"発生日時 2026年11月28日 1{n}時00分頃{extra}")


async def deliveries(store: Store) -> int:
    return (await store.list_deliveries(limit=1))[1]


async def test_first_poll_is_a_baseline_and_later_changes_are_mailed(h: Harness) -> None:
    h.server.pages["/rss"] = Page(rss2([item(1), item(2)], encoding="cp932"))
    p = h.poller(source(h.server))
    first = await p.poll(p.sources["feed"])
    assert first.counts == {"baseline": 2}
    assert await deliveries(h.store) == 0  # a cut-over never mails what is already there
    h.server.pages["/rss"] = Page(rss2([item(1), item(2), item(3)], encoding="cp932"))
    h.advance(minutes=1)
    second = await p.poll(p.sources["feed"])
    assert second.counts == {"unchanged": 2, "new": 1}
    assert await deliveries(h.store) == 1
    assert h.metric("jpixd_notices_total", source="feed", kind="failure", change="new") == 1
    assert h.metric("jpixd_feed_polls_total", source="feed", result="ok") == 2


async def test_send_on_first_poll_mails_at_once(h: Harness) -> None:
    h.server.pages["/rss"] = Page(rss2([item(1)]))
    p = h.poller(source(h.server, send_on_first_poll=True))
    assert (await p.poll(p.sources["feed"])).counts == {"new": 1}
    assert await deliveries(h.store) == 1


async def test_baseline_flag_records_without_mail_even_after_the_first_poll(h: Harness) -> None:
    h.server.pages["/rss"] = Page(rss2([item(1)]))
    p = h.poller(source(h.server, send_on_first_poll=True))
    await p.poll(p.sources["feed"])
    h.server.pages["/rss"] = Page(rss2([item(1, "（第2報）"), item(2)]))
    cut = h.poller(source(h.server, send_on_first_poll=True), baseline=True)
    report = await cut.poll(cut.sources["feed"])
    assert report.counts == {"baseline": 2}
    assert await deliveries(h.store) == 1  # only the mail of the very first poll


async def test_drop_return_reorder_and_whitespace_mail_nothing_new(h: Harness) -> None:
    h.server.pages["/rss"] = Page(rss2([item(1), item(2), item(3)]))
    p = h.poller(source(h.server, send_on_first_poll=True))
    src = p.sources["feed"]
    assert (await p.poll(src)).counts == {"new": 3}
    # Item 2 dropped without a recovery: withdrawn (shown to operators), never mailed.
    h.server.pages["/rss"] = Page(rss2([item(1), item(3)]))
    assert (await p.poll(src)).counts == {"unchanged": 2, "withdraw": 1}
    h.server.pages["/rss"] = Page(rss2([item(3), item(2), item(1)]))  # back, reordered
    assert (await p.poll(src)).counts == {"unchanged": 2, "restore": 1}
    spaced = item(2)
    spaced.description = "  発生日時　2026年11月28日 12時00分頃  \n\n "
    spaced.title = f"  {spaced.title}  "
    h.server.pages["/rss"] = Page(rss2([item(1), spaced, item(3)]))
    assert (await p.poll(src)).counts == {"unchanged": 3}
    assert await deliveries(h.store) == 3
    stored = await h.store.notice_by_key("feed", "https://www.example.jp/f/2.html")
    assert stored is not None and stored.notice.status == NoticeStatus.OCCURRED
    revisions = await h.store.revisions(stored.id)
    assert [(r.change, r.mailed) for r in revisions] == [
        (Change.NEW, True), (Change.WITHDRAW, False), (Change.RESTORE, False)]


async def test_a_second_report_supersedes_and_a_recovery_is_mailed(h: Harness) -> None:
    h.server.pages["/rss"] = Page(rss2([item(1)]))
    p = h.poller(source(h.server, send_on_first_poll=True))
    src = p.sources["feed"]
    await p.poll(src)
    h.server.pages["/rss"] = Page(rss2([item(1, "（第2報）原因を調査中")]))
    assert (await p.poll(src)).counts == {"update": 1}
    recovered = item(1, "（第3報）")
    recovered.title = recovered.title + "（回復）"
    h.server.pages["/rss"] = Page(rss2([recovered]))
    assert (await p.poll(src)).counts == {"recover": 1}
    items, _ = await h.store.list_deliveries(limit=10)
    assert [(d.state, d.reason) for d in items] == [
        (DeliveryState.SKIPPED, "superseded"), (DeliveryState.SKIPPED, "superseded"),
        (DeliveryState.PENDING, None)]
    stored = await h.store.notice_by_key("feed", "https://www.example.jp/f/1.html")
    assert stored is not None and stored.notice.status == NoticeStatus.RECOVERED


async def test_conditional_get_and_304(h: Harness) -> None:
    h.server.pages["/rss"] = Page(rss2([item(1)]))
    p = h.poller(source(h.server))
    await p.poll(p.sources["feed"])
    again = await p.poll(p.sources["feed"])
    assert again.result == "not_modified"
    sent = h.server.hits["/rss"][-1]
    assert sent["If-None-Match"].startswith('"') and sent["If-Modified-Since"]
    assert h.metric("jpixd_feed_polls_total", source="feed", result="not_modified") == 1
    assert h.metric("jpixd_feed_last_success_timestamp_seconds", source="feed") == T0.timestamp()


async def test_a_permanent_redirect_is_followed_and_remembered(h: Harness) -> None:
    h.server.pages["/old"] = Page(b"", status=301, location="/new")
    h.server.pages["/temp"] = Page(b"", status=302, location="/new")
    h.server.pages["/new"] = Page(rss2([item(1)]))
    p = h.poller(source(h.server, "/old"), source(h.server, "/temp", name="temp"))
    assert (await p.poll(p.sources["feed"])).result == "ok"
    assert (await h.store.source_state("feed")).permanent_url == h.server.url("/new")
    await p.poll(p.sources["feed"])
    assert h.server.count("/old") == 1  # the second poll went straight to /new
    await p.poll(p.sources["temp"])
    await p.poll(p.sources["temp"])
    assert h.server.count("/temp") == 2  # a temporary redirect is not remembered
    assert (await h.store.source_state("temp")).permanent_url is None


async def test_errors_back_off_and_keep_what_was_there(h: Harness) -> None:
    h.server.pages["/rss"] = Page(rss2([item(1)]))
    p = h.poller(source(h.server, timeout=timedelta(milliseconds=300)))
    src = p.sources["feed"]
    await p.poll(src)
    h.server.pages["/rss"] = Page(b"", status=500)
    delays = []
    for _ in range(3):
        report = await p.poll(src)
        assert report.result == "error" and "HTTP 500" in (report.error or "")
        st = await h.store.source_state("feed")
        assert st.next_poll_at is not None
        delays.append((st.next_poll_at - h.now[0]).total_seconds())
    assert st.consecutive_failures == 3 and st.last_error and "HTTP 500" in st.last_error
    # Doubling with jitter between half and all of it: 120, 240, 480 s at most.
    assert [60 <= d <= 120 for d in delays[:1]] == [True]
    assert delays[0] < delays[2] <= 480
    h.server.pages["/rss"] = Page(b"", hang=asyncio.Event())  # never answers in time
    timed_out = await p.poll(src)
    assert timed_out.result == "error" and "within 0.3s" in (timed_out.error or "")
    assert (await h.store.notice_by_key("feed", "https://www.example.jp/f/1.html")) is not None
    assert h.metric("jpixd_feed_polls_total", source="feed", result="error") == 4
    h.server.pages["/rss"] = Page(rss2([item(1)]))
    assert (await p.poll(src)).result in ("ok", "not_modified")
    assert (await h.store.source_state("feed")).consecutive_failures == 0


async def test_an_oversized_body_is_refused(h: Harness) -> None:
    h.server.pages["/rss"] = Page(rss2([item(i) for i in range(1, 60)]))
    p = h.poller(source(h.server, max_body_bytes=2048))
    report = await p.poll(p.sources["feed"])
    assert report.result == "error" and "over the limit of 2048" in (report.error or "")
    assert (await h.store.list_notices())[1] == 0


async def test_garbage_is_a_parse_error_and_changes_nothing(h: Harness) -> None:
    h.server.pages["/rss"] = Page(rss2([item(1)]))
    p = h.poller(source(h.server, send_on_first_poll=True))
    await p.poll(p.sources["feed"])
    h.server.pages["/rss"] = Page(b"\x00\x01 this is not a feed <html", content_type="text/html")
    report = await p.poll(p.sources["feed"])
    assert report.result == "parse_error"
    assert (await h.store.list_notices())[1] == 1


async def test_a_malformed_item_is_quarantined_once_and_the_rest_stored(h: Harness) -> None:
    broken = RssItem("", "https://www.example.jp/f/x.html", "タイトルがありません")
    h.server.pages["/rss"] = Page(rss2([item(1), broken, item(2)]))
    p = h.poller(source(h.server, send_on_first_poll=True))
    report = await p.poll(p.sources["feed"])
    assert report.counts == {"new": 2, "quarantined": 1}
    h.server.pages["/rss"] = Page(rss2([item(2), broken, item(1)]))
    await p.poll(p.sources["feed"])
    [q] = await h.store.quarantined("feed")
    assert q["ref"] == "feed:https://www.example.jp/f/x.html"
    assert q["reason"] == "item has no title" and "タイトルがありません" in str(q["payload"])


def west_rss(server: FeedServer, reports: dict[int, int]) -> bytes:
    return rss2([RssItem("【故障】大阪府の一部でフレッツ光ネクストが"
                         f"ご利用しづらい状況について（第{r}報）",
                         server.url(f"/detail/{n}.html"), f"第{r}報")
                 for n, r in reports.items()], encoding="cp932")


def west_detail(n: int, report: int) -> Page:
    return Page(west_failure_detail(
        title=f"大阪府の一部でフレッツ光ネクストがご利用しづらい状況について（{n}）", report=report,
        as_of="16時30分", occurred=f"2026年11月28日（土）1{n}時05分頃",
        area="大阪府大阪市北区の一部",
        services=["フレッツ光ネクスト：約1.5万回線"], measures=f"第{report}報：調査中です。"),
        content_type="text/html")


async def test_ntt_west_fetches_detail_pages_only_when_the_list_changes(h: Harness) -> None:
    h.server.pages["/rss"] = Page(west_rss(h.server, {1: 1, 2: 1}))
    h.server.pages["/detail/1.html"] = west_detail(1, 1)
    h.server.pages["/detail/2.html"] = west_detail(2, 1)
    p = h.poller(source(h.server, kind="ntt-west", send_on_first_poll=True,
                        detail_delay=timedelta(seconds=1)))
    src = p.sources["feed"]
    assert (await p.poll(src)).counts == {"new": 2}
    assert h.slept == [1.0]  # one pause between the two detail pages, none before
    h.server.pages["/rss"] = Page(west_rss(h.server, {1: 2, 2: 1}))
    h.server.pages["/detail/1.html"] = west_detail(1, 2)
    report = await p.poll(src)
    assert report.counts == {"unchanged": 1, "update": 1}
    assert (h.server.count("/detail/1.html"), h.server.count("/detail/2.html")) == (2, 1)
    stored = await h.store.notice_by_key("feed", h.server.url("/detail/1.html"))
    assert stored is not None and stored.notice.report_number == 2


async def test_a_failed_detail_page_is_retried_and_nothing_is_lost(h: Harness) -> None:
    h.server.pages["/rss"] = Page(west_rss(h.server, {1: 1, 2: 1}))
    h.server.pages["/detail/1.html"] = west_detail(1, 1)
    h.server.pages["/detail/2.html"] = Page(b"", status=503)
    p = h.poller(source(h.server, kind="ntt-west", send_on_first_poll=True))
    src = p.sources["feed"]
    report = await p.poll(src)
    assert report.counts == {"new": 1, "retry_later": 1} and not report.complete
    st = await h.store.source_state("feed")
    assert st.etag is None  # no 304 next time: the missing item will be seen again
    # Shown to operators, not only logged: the sources API reads this state.
    assert st.detail_error and "/detail/2.html" in st.detail_error and "503" in st.detail_error
    assert h.metric("jpixd_feed_detail_failures_total", source="feed") == 1
    h.server.pages["/detail/2.html"] = west_detail(2, 1)
    again = await p.poll(src)
    assert again.result == "ok" and again.counts == {"unchanged": 1, "new": 1}
    st = await h.store.source_state("feed")
    assert st.etag is not None and st.detail_error is None


async def test_a_failed_detail_page_during_the_first_poll_keeps_the_baseline(h: Harness) -> None:
    h.server.pages["/rss"] = Page(west_rss(h.server, {1: 1, 2: 1}))
    h.server.pages["/detail/1.html"] = west_detail(1, 1)
    h.server.pages["/detail/2.html"] = Page(b"", status=503)
    p = h.poller(source(h.server, kind="ntt-west"))
    src = p.sources["feed"]
    await p.poll(src)
    h.server.pages["/detail/2.html"] = west_detail(2, 1)
    report = await p.poll(src)
    # The item that was already there before the cut-over is still baseline, not mail.
    assert report.counts == {"unchanged": 1, "baseline": 1}
    assert await deliveries(h.store) == 0


async def test_run_once_polls_only_due_sources(h: Harness, tmp_path: Path) -> None:
    feed_file = tmp_path / "local.json"
    feed_file.write_text('{"notices": [{"id": "1", "kind": "failure", "title": "故障"}]}')
    h.server.pages["/rss"] = Page(rss2([item(1)]))
    p = h.poller(source(h.server),
                 source(h.server, name="local", kind="json", url=feed_file.as_uri(),
                        interval=timedelta(minutes=10)))
    await p.run_once()
    assert h.server.count("/rss") == 1
    assert (await h.store.list_notices(source="local"))[1] == 1
    h.advance(seconds=70)  # the 60 s source is due (±10 %), the 10 min one is not
    await p.run_once()
    assert h.server.count("/rss") == 2
    assert (await h.store.source_state("local")).last_success_at == T0
    report: PollReport = await p.poll(p.sources["local"])
    assert report.result == "not_modified"  # file:// uses mtime and size as validator


async def test_changes_are_recorded_with_the_change_kind(h: Harness) -> None:
    h.server.pages["/rss"] = Page(rss2([item(1)]))
    p = h.poller(source(h.server, send_on_first_poll=True))
    report = await p.poll(p.sources["feed"])
    [change] = report.changes
    assert change["change"] == str(Change.NEW) and change["deliveries"] == 1


async def test_recorded_mail_wakes_the_sender(h: Harness) -> None:
    """Issue 13: a failure notice waited up to a sender interval after the poll."""
    h.server.pages["/rss"] = Page(rss2([item(1)]))
    woken = asyncio.Event()
    p = h.poller(source(h.server))
    p.on_deliveries = woken.set
    await p.poll(p.sources["feed"])  # the first poll is a baseline: no mail, no wake
    assert not woken.is_set()
    h.server.pages["/rss"] = Page(rss2([item(1), item(2)]))
    await p.poll(p.sources["feed"])
    assert woken.is_set()
