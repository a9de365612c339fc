"""What the parser and normaliser make of one saved page, without a database: the core of
`jpixd parse` and of the golden-file corpus in tests/. Pure but for `load`, the caller's
way of reading a detail page (a file beside the page, or an HTTP fetch)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jpixd.feeds import layout
from jpixd.feeds.errors import FeedError, LayoutChanged, ParseError
from jpixd.feeds.normalise import Draft, ItemError, normalise_item, revision_of
from jpixd.feeds.parsers import ParseResult, json_feed, ntt_east, ntt_west, rss
from jpixd.model import notice_to_json

PARSERS: dict[str, Callable[..., ParseResult]] = {
    "rss": rss.parse, "atom": rss.parse, "json": json_feed.parse,
    "ntt-east": ntt_east.parse, "ntt-west": ntt_west.parse,
}
DETAILS: dict[str, Callable[[str, Draft], Draft]] = {
    "ntt-east": ntt_east.detail, "ntt-west": ntt_west.detail,
}
KINDS = tuple(PARSERS)

Load = Callable[[str], Awaitable[str]]


@dataclass
class Extraction:
    notices: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    layout_warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"notices": self.notices, "errors": self.errors,
                "layout_warning": self.layout_warning}


async def extract(kind: str, text: str, *, url: str, now: datetime,
                  load: Load | None = None) -> Extraction:
    """Every notice the page yields (with its key, status judgement and revision), every
    item error, and the layout warning the poller would raise (with no history: a page
    that yields nothing is judged on its own words)."""
    out = Extraction()
    try:
        parsed = PARSERS[kind](text, url=url)
    except LayoutChanged as exc:
        out.layout_warning = str(exc)
        return out
    except ParseError as exc:
        out.errors.append({"item": "(page)", "error": str(exc)})
        return out
    out.layout_warning = layout.verdict(kind, parsed, None)
    out.errors += [{"item": e.ref, "error": e.reason} for e in parsed.errors]
    for draft in parsed.drafts:
        try:
            if draft.needs_detail and kind in DETAILS and load is not None and draft.url:
                draft = DETAILS[kind](await load(draft.url), draft)
            item = normalise_item(draft, source=kind, carrier=_carrier(kind), ref=now,
                                  base_url=url)
        except ItemError as err:
            out.errors.append({"item": err.ref, "error": err.reason})
            continue
        except LayoutChanged as exc:
            out.layout_warning = f"{draft.url}: {exc}"
            continue
        except FeedError as exc:
            out.errors.append({"item": draft.external_id, "error": f"detail page: {exc}"})
            continue
        data = notice_to_json(item.notice)
        data.pop("source")
        data["key"] = data.pop("external_id")
        data["status_stated"] = item.status_stated
        if item.unrecognised:
            data["unrecognised"] = list(item.unrecognised)
        data["revision"] = revision_of(item.notice)[:16]
        out.notices.append(data)
    return out


def _carrier(kind: str) -> str:
    return "west" if kind == "ntt-west" else "east"


def table(ex: Extraction) -> str:
    """A short table for a person: one line per notice."""
    lines = [f"{'status':<20} {'starts':<16} {'ends':<16} {'pref':<12} {'報':>3}  title / key"]
    for n in ex.notices:
        start = (n["starts_at"] or "")[:16].replace("T", " ")
        end = (n["ends_at"] or "")[:16].replace("T", " ")
        prefs = ",".join(n["prefectures"])[:12]
        number = n["report_number"] or ""
        lines.append(f"{n['status']:<20} {start:<16} {end:<16} {prefs:<12} {number!s:>3}  "
                     f"{n['title'][:40]}")
        # NTT's own time, where the page states one: what the board shows as 「NTT更新」.
        stated = f"  ntt_time={n['published_at'][:16].replace('T', ' ')}" \
            if n.get("published_at") else ""
        lines.append(f"{'':<70}  key={n['key']}  services={'、'.join(n['services'])}{stated}")
        for w in n["windows"]:
            lines.append(f"{'':<20} window {w['start'][:16]} ～ {(w['end'] or '')[:16]}"
                         f"{' (予備日)' if w['reserve'] else ''}")
    for e in ex.errors:
        lines.append(f"error   {e['item']}: {e['error']}")
    if ex.layout_warning:
        lines.append(f"LAYOUT  {ex.layout_warning}")
    lines.append(f"{len(ex.notices)} notice(s), {len(ex.errors)} error(s)")
    return "\n".join(lines)
