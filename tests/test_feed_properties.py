"""Property tests: whatever bytes a source sends, parsing raises only ParseError (the
whole body is unusable) and normalising only ItemError (this item is unusable)."""

from __future__ import annotations

from datetime import datetime

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jpixd.feeds.charset import decode
from jpixd.feeds.errors import ParseError
from jpixd.feeds.normalise import Draft, ItemError, normalise
from jpixd.feeds.parsers import json_feed, ntt_east, ntt_west, rss
from jpixd.model import JST
from tests.feedfixtures import EastRow, RssItem, east_page, json_notices, rss2

REF = datetime(2026, 11, 28, 15, 0, tzinfo=JST)
PARSERS = [rss.parse, json_feed.parse, ntt_east.parse, ntt_west.parse]

# Bytes that look a little like what sources send, and bytes that do not at all.
SEEDS = [
    rss2([RssItem("【故障】東京都で障害", "https://e.jp/1", "第2報 2026年12月3日 0:00～6:00")]),
    east_page({"東京都": [EastRow("E-1", "2026年12月3日 0:00～6:00", "新宿区")]}, {}),
    json_notices([{"id": "1", "kind": "failure", "title": "故障", "prefectures": ["13"]}]),
]
junk = st.one_of(
    st.binary(max_size=2000),
    st.sampled_from(SEEDS).flatmap(
        lambda seed: st.tuples(st.integers(0, len(seed)), st.binary(max_size=40)).map(
            lambda cut: seed[:cut[0]] + cut[1] + seed[cut[0]:])),
    st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


def _check(data: bytes) -> None:
    try:
        text, _ = decode(data)
    except ParseError:
        return
    for parse in PARSERS:
        try:
            result = parse(text, url="https://example.jp/feed")
        except ParseError:
            continue
        for draft in result.drafts:
            try:
                normalise(draft, source="s", carrier="east", ref=REF)
            except ItemError:
                pass
    draft = Draft(external_id="x", title="【故障】", url="https://e.jp/x")
    try:
        ntt_west.detail(text, draft)
    except ParseError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk)
@example(b"\xef\xbb\xbf\x80")  # found by hypothesis: a BOM, then not UTF-8
@example(b"<div id=nav></div>\x01")  # found by hypothesis: a control byte after a menu
def test_no_bytes_make_a_parser_raise_anything_else(data: bytes) -> None:
    _check(data)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300), st.text(max_size=200))
def test_no_text_makes_normalise_raise_anything_but_item_error(title: str, body: str,
                                                                area: str) -> None:
    draft = Draft(external_id="id", title=title, body=body, area_text=area, when_text=body,
                  recovered_text=area, services_text=body, status=area)
    try:
        normalise(draft, source="s", carrier="west", ref=REF)
    except ItemError:
        pass
