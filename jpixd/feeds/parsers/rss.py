"""RSS 2.0, RSS 1.0 (RDF) and Atom through feedparser."""

from __future__ import annotations

import calendar
import hashlib
import json
import re
from collections import Counter
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


def item_id(entry: Any, link_counts: Counter[str], base: str) -> str:
    """The link (stable for NTT's detail pages, and not re-minted like some guids) when
    it names this item alone; otherwise the guid; otherwise a hash of title and date."""
    link = canonical_url(entry.get("link"), base)
    if link and link_counts[link] == 1:
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


def parse(text: str, *, url: str) -> ParseResult:
    items = entries(text)
    counts = Counter(canonical_url(e.get("link"), url) or "" for e in items)
    result = ParseResult()
    for e in items:
        title = fragment_text(e.get("title", "") or "")
        ident = item_id(e, counts, url)
        if not title.strip():
            result.errors.append(ItemError(ident, "item has no title", payload(e)))
            continue
        result.drafts.append(Draft(
            external_id=ident, title=title, body=_body(e),
            url=urljoin(url, e["link"]) if e.get("link") else None,
            categories=tuple(t.get("term", "") for t in e.get("tags", []) if t.get("term")),
            published=_when(e),
        ))
    return result
