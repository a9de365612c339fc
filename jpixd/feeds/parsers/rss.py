"""RSS 2.0, RSS 1.0 (RDF) and Atom through feedparser."""

from __future__ import annotations

import calendar
import hashlib
import json
import re
import unicodedata
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser

from jpixd.feeds.errors import ParseError
from jpixd.feeds.html import fragment_text
from jpixd.feeds.normalise import Draft, ItemError, canonical_url
from jpixd.feeds.parsers import ParseResult

_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")


def _when(entry: Any) -> datetime | None:
    # Read the plain dict: FeedParserDict maps missing keys to each other and warns.
    parsed = dict.get(entry, "published_parsed") or dict.get(entry, "updated_parsed")
    if not parsed:
        return None
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC)


def _body(entry: Any) -> str:
    content = entry.get("content") or []
    html = content[0].get("value", "") if content else entry.get("summary", "")
    return fragment_text(html or "")


def entries(text: str) -> list[Any]:
    """The feed's entries; ParseError when the text is not RSS or Atom at all."""
    # Already decoded: declare UTF-8 so feedparser does not re-decode as Shift_JIS.
    data = _DECL.sub('<?xml version="1.0" encoding="utf-8"?>', text, count=1).encode("utf-8")
    parsed = feedparser.parse(data)
    if not parsed.get("version") and not parsed.entries:
        why = parsed.get("bozo_exception")
        raise ParseError(f"not an RSS or Atom feed{f': {why}' if why else ''}")
    return list(parsed.entries)


def link_of(entry: Any, raw: str) -> str | None:
    """The item's link as written: feedparser turns `file:///path` into `file://path`."""
    link = entry.get("link")
    if isinstance(link, str) and link.startswith("file://") and not link.startswith(
            "file:///") and f"file:///{link[7:]}" in raw:
        return f"file:///{link[7:]}"
    return link if isinstance(link, str) else None


def item_id(entry: Any, base: str, raw: str) -> str:
    """The link (stable for NTT's detail pages, and not re-minted like some guids);
    otherwise the guid; otherwise a hash of title and date. Items that share a link are
    one notice (see `newest`), so the key never switches to the guid when a second item
    with the same link appears: that would orphan the first notice."""
    link = canonical_url(link_of(entry, raw), base)
    if link:
        return link
    guid = (entry.get("id") or "").strip()
    if guid:
        return guid
    seed = f"{entry.get('title', '')}|{entry.get('published', '')}"
    return "sha256:" + hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32]


def payload(entry: Any) -> str:
    return json.dumps({k: entry.get(k) for k in ("id", "link", "title", "summary",
                                                 "published")},
                      ensure_ascii=False, default=str)


_REPORT = re.compile(r"第\s*([0-9０-９]{1,6})\s*報")


def _newness(d: Draft) -> tuple[int, float]:
    m = _REPORT.search(d.title)
    number = int(unicodedata.normalize("NFKC", m.group(1))) if m else 0
    return number, d.published.timestamp() if d.published else 0.0


def newest(drafts: list[Draft]) -> list[Draft]:
    """Several items for one key (第1報 and 第2報 linking one detail page, or one id twice):
    the newest report stands for the notice; the others are older news of it."""
    best: dict[str, Draft] = {}
    for d in drafts:
        seen = best.get(d.external_id)
        if seen is None or _newness(d) > _newness(seen):
            best[d.external_id] = d
    return [d for d in drafts if best[d.external_id] is d]


def parse(text: str, *, url: str) -> ParseResult:
    items = entries(text)
    result = ParseResult()
    for e in items:
        title = fragment_text(e.get("title", "") or "")
        ident = item_id(e, url, text)
        if not title.strip():
            result.errors.append(ItemError(ident, "item has no title", payload(e)))
            continue
        link = link_of(e, text)
        result.drafts.append(Draft(
            external_id=ident, title=title, body=_body(e),
            url=urljoin(url, link) if link else None,
            categories=tuple(t.get("term", "") for t in e.get("tags", []) if t.get("term")),
            published=_when(e),
        ))
    result.drafts = newest(result.drafts)
    return result
