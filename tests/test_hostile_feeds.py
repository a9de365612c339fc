"""Hostile and broken feed input (security probe H1, H3, M2, M3): every bad item or page
is quarantined or counted, the good items beside it are recorded, and nothing reads
local files or follows a redirect it should not."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jpixd.feeds.errors import FeedError
from jpixd.feeds.fetch import Fetched, Fetcher
from jpixd.feeds.policy import detail_refusal, redirect_refusal
from jpixd.feeds.poller import FeedPoller
from tests.feedfixtures import RssItem, rss2
from tests.feedharness import Harness
from tests.feedserver import Page
from tests.test_feed_poller import source

GOOD = {"id": "OK", "kind": "failure", "title": "東京都で故障", "prefectures": ["13"]}


def json_page(*items: dict[str, Any], extra: str = "") -> Page:
    body = json.dumps({"notices": list(items)}, ensure_ascii=False)
    return Page((body[:-1] + extra + "}").encode(), content_type="application/json")


async def poll(h: Harness, page: Page, kind: str = "json") -> tuple[FeedPoller, Any]:
    h.server.pages["/f"] = page
    p = h.poller(source(h.server, "/f", kind=kind, send_on_first_poll=True))
    return p, await p.poll(p.sources["feed"])


async def test_out_of_range_values_are_quarantined_beside_good_items(h: Harness) -> None:
    bad: list[dict[str, Any]] = [{**GOOD, "id": "R", "report_number": 10**30},
           {**GOOD, "id": "Y1", "starts_at": "0001-01-01T00:00:00+09:00"},
           {**GOOD, "id": "Y9", "starts_at": "9999-12-31T23:59:59-23:59"},
           {**GOOD, "id": True},
           {**GOOD, "id": "L", "title": "長" * 100_000}]
    _, report = await poll(h, json_page(GOOD, *bad))
    assert report.result == "ok"
    assert report.counts == {"new": 2, "quarantined": 4}
    items, _ = await h.store.list_notices()
    long = next(n for n in items if n.notice.external_id == "L")
    assert len(long.notice.title) == 200 and long.notice.title.endswith("…")


@pytest.mark.parametrize("extra", [', "x": ' + "1" * 5000, ', "x": ' + "[" * 100_000])
async def test_json_the_parser_cannot_hold_is_a_parse_error(h: Harness, extra: str) -> None:
    _, report = await poll(h, json_page(GOOD, extra=extra))
    assert report.result == "parse_error" and "JSON" in (report.error or "")


async def test_dates_and_report_numbers_out_of_range_in_text(h: Harness) -> None:
    items = [RssItem("【故障】東京都 第99999999999999999999報", "https://e.jp/1"),
             RssItem("【故障】大阪府の一部", "https://e.jp/2", "0001年1月1日 0:00～6:00"),
             RssItem("【故障】京都府の一部", "https://e.jp/3", "9999年12月31日 24:00"),
             RssItem("【故障】奈良県の一部", "https://e.jp/4", "故障" + "\n" * 20_000 + "x")]
    page = Page(rss2(items, declared="undefined"), charset="undefined")
    _, report = await poll(h, page, kind="rss")
    assert report.result == "ok" and report.counts == {"new": 4}
    found = {n.notice.external_id: n.notice for n in (await h.store.list_notices())[0]}
    assert found["https://e.jp/1"].report_number is None
    assert found["https://e.jp/2"].starts_at is None and found["https://e.jp/3"].starts_at is None


async def test_control_characters_never_reach_the_notice(h: Harness) -> None:
    item = {**GOOD, "body": "本文\u0000NUL\u001b$B\u001b(Bescape\u0007bell\u0008bs"}
    await poll(h, json_page(item))
    [n], _ = await h.store.list_notices()
    assert n.notice.body == "本文NUL$B(Bescapebellbs"


async def test_duplicate_ids_in_one_feed_mail_once(h: Harness) -> None:
    first, second = {**GOOD, "id": "DUP", "body": "first"}, {**GOOD, "id": "DUP", "body": "2"}
    p, report = await poll(h, json_page(first, second))
    assert report.counts == {"new": 1, "quarantined": 1}
    h.server.pages["/f"] = json_page(first, second, extra=', "touched": 1')
    again = await p.poll(p.sources["feed"])
    assert again.counts == {"unchanged": 1, "quarantined": 1}
    assert (await h.store.list_deliveries(limit=1))[1] == 1


class Exploding(Fetcher):
    """A fetcher that fails in a way no handler expects (fault injection)."""

    async def fetch(self, url: str, **kw: Any) -> Fetched:
        raise RuntimeError("something nobody foresaw")


async def test_an_unexpected_error_is_one_failed_poll_not_a_dead_loop(h: Harness) -> None:
    src = source(h.server, "/f", kind="json")
    p = h.poller(src)
    p.fetcher = Exploding(h.http)
    report = await p.poll(p.sources["feed"])
    assert report.result == "error" and "incident" in (report.error or "")
    [q] = await h.store.quarantined("feed")
    assert "RuntimeError" in str(q["reason"]) and "incident" in str(q["reason"])
    assert h.metric("jpixd_unit_errors_total", unit="feed_poll") == 1
    st = await h.store.source_state("feed")
    assert st.consecutive_failures == 1 and st.next_poll_at is not None


async def test_an_http_feed_cannot_make_jpixd_read_local_files(h: Harness,
                                                               tmp_path: Path) -> None:
    secret = tmp_path / "secret.html"
    secret.write_text("<table><tr><th>影響エリア</th><td>LOCAL-SECRET</td></tr></table>")
    items = [RssItem("【故障】東京都", f"file://localhost{secret}"),
             RssItem("【故障】大阪府", "file:///etc/passwd"),
             RssItem("【故障】京都府", "http://169.254.169.254/latest/meta-data/")]
    h.server.pages["/west"] = Page(rss2(items))
    p = h.poller(source(h.server, "/west", kind="ntt-west", send_on_first_poll=True,
                        detail_delay=timedelta(0)))
    report = await p.poll(p.sources["feed"])
    assert report.counts == {"quarantined": 3}
    for q in await h.store.quarantined("feed"):
        assert "not followed" in str(q["reason"])
        assert "LOCAL-SECRET" not in str(q["payload"]) and "root:" not in str(q["payload"])
    assert (await h.store.list_notices())[1] == 0


async def test_a_file_source_reads_regular_files_in_its_own_directory_only(
        h: Harness, tmp_path: Path) -> None:
    fetcher = Fetcher(h.http)
    with pytest.raises(FeedError, match="not a regular file"):
        await fetcher.fetch("file:///dev/zero", limit_seconds=2, max_bytes=1024)
    feed = (tmp_path / "rss.xml").as_uri()
    assert detail_refusal(feed, (tmp_path / "d" / "1.html").as_uri()) is None
    assert detail_refusal(feed, "file:///etc/passwd") is not None
    assert detail_refusal(feed, (tmp_path / ".." / "x.html").as_uri()) is not None
    assert detail_refusal(feed, "https://example.jp/1.html") is not None


def test_redirects_that_are_refused() -> None:
    src = "https://www.example.jp/rss"
    assert redirect_refusal(src, src, "https://www.example.jp/new") is None
    assert redirect_refusal(src, src, "http://www.example.jp/new") is not None  # downgrade
    assert redirect_refusal(src, src, "https://elsewhere.example/rss") is not None
    assert redirect_refusal(src, src, "https://elsewhere.example/rss",
                            ["elsewhere.example"]) is None
    assert redirect_refusal(src, src, "http://169.254.169.254/latest") is not None
    assert redirect_refusal(src, src, "file:///etc/passwd") is not None
    assert detail_refusal("http://a.jp/rss", "http://b.jp/1", ["b.jp"]) is None


async def test_a_redirect_to_another_host_is_not_followed(h: Harness) -> None:
    h.server.pages["/moved"] = Page(b"", status=301,
                                    location="http://localhost:1/elsewhere.xml")
    p = h.poller(source(h.server, "/moved"))
    report = await p.poll(p.sources["feed"])
    assert report.result == "error" and "another host" in (report.error or "")


async def test_a_remembered_redirect_yields_to_a_changed_url(h: Harness) -> None:
    h.server.pages["/old"] = Page(b"", status=301, location=h.server.url("/new"))
    h.server.pages["/new"] = Page(rss2([RssItem("【故障】東京都", "https://e.jp/1")]))
    h.server.pages["/fixed"] = Page(rss2([RssItem("【故障】東京都", "https://e.jp/1")]))
    p = h.poller(source(h.server, "/old"))
    await p.poll(p.sources["feed"])
    assert (await h.store.source_state("feed")).permanent_url == h.server.url("/new")
    changed = h.poller(source(h.server, "/fixed"))
    await changed.poll(changed.sources["feed"])
    assert h.server.hits["/fixed"] and (await h.store.source_state("feed")).permanent_url is None
