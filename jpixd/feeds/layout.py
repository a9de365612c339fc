"""Has NTT redesigned the page? Pure. An operator must learn it within one poll, not
from a customer: a page that used to yield notices and now yields none (without saying
「ありません」), or that has dated, notice-like text no parser read, is `layout_changed`."""

from __future__ import annotations

from jpixd.feeds.parsers import ParseResult

# Kinds whose pages are HTML we read by layout; feeds (RSS, Atom, JSON) have a grammar,
# and an empty channel is a normal state for them.
HTML_KINDS = frozenset({"ntt-east"})


def verdict(kind: str, parsed: ParseResult, last_items: int | None) -> str | None:
    """Why the page looks redesigned, or None when it reads as it should."""
    if parsed.warnings:
        return "; ".join(parsed.warnings)
    if kind not in HTML_KINDS or parsed.drafts or parsed.errors or parsed.says_empty:
        return None
    if last_items:
        return (f"the page yielded {last_items} notice(s) at the last good poll and now "
                "yields none, without saying there are none")
    return None
