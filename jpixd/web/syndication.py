"""The notice board as feeds: Atom (RFC 4287) and iCalendar (RFC 5545). Pure.

The Atom document is built with ElementTree, so every text is escaped by construction.
The calendar holds construction windows only (planned work is what a NOC schedules
around): each window is one VEVENT whose UID stays the same across revisions, so a
calendar app moves the event when NTT moves the work, and a cancelled notice's events
say STATUS:CANCELLED so that they disappear instead of lingering.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

from jpixd.mail.render import KIND_LABELS, STATUS_LABELS, local_end, local_time
from jpixd.model import JST, NoticeKind, NoticeStatus, StoredNotice, TimeWindow, notice_windows
from jpixd.prefectures import NAME_BY_CODE
from jpixd.timeline import clock_changed_at, label_now

ATOM = "http://www.w3.org/2005/Atom"
# XML 1.0 cannot carry these at all (escaping does not help): dropped.
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text: str) -> str:
    return _XML_BAD.sub("", text)


def headline(s: StoredNotice, now: datetime | None = None) -> str:
    """「【工事・予定】…」; with `now`, a scheduled work's state as the clock has it
    (実施中, 終了: jpixd.timeline), on the pages, which are made for each request."""
    n = s.notice
    label = label_now(n, now) if now is not None else STATUS_LABELS.get(n.status, str(n.status))
    return f"【{KIND_LABELS.get(n.kind, '')}・{label}】{n.title}"


# A feed entry's text: what a reader needs to decide whether to open the notice; the
# whole text is on the notice's page. Bounds a feed of 200 entries to a few hundred KB
# whatever a source publishes (a 20,000-character body made a 4 MB calendar).
SUMMARY_BODY_LIMIT = 1000


def summary(s: StoredNotice) -> str:
    n = s.notice
    parts = []
    if n.changes:  # what the latest report changed, first
        parts.append("変更点: " + "、".join(
            f"{c.label} {c.before} → {c.after}" if c.before else f"{c.label} {c.after}"
            for c in n.changes))
    windows = windows_of(s)
    if windows:
        label = "工事日時" if n.kind == NoticeKind.CONSTRUCTION else "発生日時"
        parts.append(f"{label}: " + "、".join(
            local_time(w.start) + (f" ～ {local_end(w.end, w.start)}" if w.end else "")
            + ("（予備日）" if w.reserve else "") for w in windows))
    if n.prefectures:
        parts.append("対象地域: " + "、".join(NAME_BY_CODE.get(c, c) for c in n.prefectures))
    if n.services:
        parts.append("影響サービス: " + "、".join(n.services))
    if n.body:
        body = n.body
        if len(body) > SUMMARY_BODY_LIMIT:
            body = body[:SUMMARY_BODY_LIMIT] + "…（全文はお知らせのページをご覧ください）"
        parts.append(body)
    return "\n".join(parts)


# Renders a notice's part of a feed, or gives the one kept from before: (key, make) →
# text. A feed is rebuilt whenever any notice changes; its other entries have not.
Memo = Callable[[Hashable, Callable[[], str]], str]


def _no_memo(key: Hashable, make: Callable[[], str]) -> str:
    return make()


def _el(parent: ET.Element | None, tag: str, text: str | None = None,
        **attrs: str) -> ET.Element:
    """An element in the feed's default namespace (written once, on <feed>)."""
    el = ET.Element(tag, attrs) if parent is None else ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = _x(text)
    return el


def updated(s: StoredNotice, now: datetime) -> datetime:
    """When the entry last changed: the notice, or the clock (a work 実施中 or 終了)."""
    moved = clock_changed_at(s.notice, now)
    return max(s.last_changed, moved) if moved is not None else s.last_changed


def atom_entry(s: StoredNotice, *, base_url: str, now: datetime) -> str:
    host = urlsplit(base_url).hostname or "localhost"
    entry = _el(None, "entry")
    _el(entry, "title", headline(s, now))
    _el(entry, "id", f"tag:{host},2026:jpixd/notice/{s.id}")
    _el(entry, "updated", updated(s, now).isoformat())
    _el(entry, "published", s.first_seen.isoformat())
    _el(entry, "link", rel="alternate", href=f"{base_url}/notices/{s.id}")
    # The term is what a program filters on; the label is what a reader sees.
    _el(entry, "category", term=str(s.notice.kind),
        label=KIND_LABELS.get(s.notice.kind, str(s.notice.kind)))
    _el(entry, "summary", summary(s))
    return ET.tostring(entry, encoding="unicode")


def atom(notices: Sequence[StoredNotice], *, base_url: str, self_url: str, title: str,
         now: datetime, memo: Memo = _no_memo) -> bytes:
    """The document is put together from its elements, each escaped by ElementTree; the
    Atom namespace is the default one, declared on <feed>."""
    host = urlsplit(base_url).hostname or "localhost"
    query = urlsplit(self_url).query
    head = [
        _el(None, "title", title),
        _el(None, "id", f"tag:{host},2026:jpixd/notices{'?' + query if query else ''}"),
        _el(None, "updated",
            max((updated(s, now) for s in notices), default=now).isoformat()),
        _el(None, "link", rel="self", href=self_url),
        _el(None, "link", rel="alternate", href=f"{base_url}/notices"),
    ]
    author = _el(None, "author")
    _el(author, "name", title)
    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="{ATOM}">',
             *(ET.tostring(el, encoding="unicode") for el in [*head, author])]
    for s in notices:
        # Kept per revision and per state the clock gives it (予定 → 実施中 → 終了).
        state = label_now(s.notice, now)
        parts.append(memo(("atom", base_url, s.id, s.revision, s.last_changed, state),
                          functools.partial(atom_entry, s, base_url=base_url, now=now)))
    parts.append("</feed>")
    return "".join(parts).encode()


# --------------------------------------------------------------------------- iCalendar


def _ics_text(text: str) -> str:
    """RFC 5545 §3.3.11: backslash, semicolon, comma and line breaks escaped; other
    controls dropped (a title cannot add a property line)."""
    text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text)
    return (text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def _fold(line: str) -> str:
    """Lines of at most 75 octets, continued with CRLF and a space, never splitting a
    UTF-8 character. Cut on the encoded bytes, a whole line at a time (character by
    character in Python, a wordy calendar took most of a second)."""
    data = line.encode()
    if len(data) <= 75:
        return line
    out, start, room = [], 0, 75
    while start < len(data):
        end = min(start + room, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # inside a character
            end -= 1
        out.append(data[start:end].decode())
        start, room = end, 74  # a continuation line begins with its space
    return "\r\n ".join(out)


def _stamp(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def windows_of(s: StoredNotice) -> list[TimeWindow]:
    return notice_windows(s.notice)


# SEQUENCE counts a notice's changes: minutes from this moment to its last change, which
# only grows (RFC 5545 §3.8.7.4: a client keeps the event with the higher one, so without
# it Outlook and Thunderbird may keep a moved work at its old time).
_SEQUENCE_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def sequence(s: StoredNotice, now: datetime) -> int:
    return max(int((updated(s, now) - _SEQUENCE_EPOCH).total_seconds() // 60), 0)


def event_ids(s: StoredNotice, windows: Sequence[TimeWindow]) -> list[str]:
    """Each window's UID part: its night's date (JST), so that dropping or adding a night
    leaves the others' events alone, and moving a night within its date moves its event;
    a second window on one date is "-2", and a reserve day is marked as one."""
    seen: dict[str, int] = {}
    out = []
    for w in windows:
        day = w.start.astimezone(JST).strftime("%Y%m%d") + ("r" if w.reserve else "")
        seen[day] = seen.get(day, 0) + 1
        out.append(day if seen[day] == 1 else f"{day}-{seen[day]}")
    return out


def location(s: StoredNotice) -> str:
    """Where: the prefectures, and the localities NTT named."""
    n = s.notice
    where = "、".join(NAME_BY_CODE.get(c, c) for c in n.prefectures)
    if n.localities:
        where += f"（{'、'.join(n.localities)}）"
    return where


def ics_events(s: StoredNotice, *, base_url: str, now: datetime) -> str:
    """A notice's VEVENTs (construction windows only), folded, each line ending CRLF."""
    if s.notice.kind != NoticeKind.CONSTRUCTION:
        return ""
    host = urlsplit(base_url).hostname or "localhost"
    cancelled = s.notice.status in (NoticeStatus.CANCELLED, NoticeStatus.WITHDRAWN)
    windows = windows_of(s)
    where = location(s)
    lines: list[str] = []
    for day, w in zip(event_ids(s, windows), windows, strict=True):
        end = w.end if w.end is not None and w.end > w.start else w.start + timedelta(hours=1)
        title = headline(s, now) + ("（予備日）" if w.reserve else "")
        lines += [
            "BEGIN:VEVENT",
            f"UID:notice-{s.id}-{day}@{host}",
            f"DTSTAMP:{_stamp(now)}",
            f"LAST-MODIFIED:{_stamp(updated(s, now))}",
            f"SEQUENCE:{sequence(s, now)}",
            f"DTSTART:{_stamp(w.start)}",
            f"DTEND:{_stamp(end)}",
            f"SUMMARY:{_ics_text(title)}",
            *([f"LOCATION:{_ics_text(where)}"] if where else []),
            f"DESCRIPTION:{_ics_text(summary(s))}",
            f"URL:{base_url}/notices/{s.id}",
            f"STATUS:{'CANCELLED' if cancelled else 'TENTATIVE' if w.reserve else 'CONFIRMED'}",
            "TRANSP:TRANSPARENT",
            "END:VEVENT",
        ]
    return "".join(_fold(line) + "\r\n" for line in lines)


def ics(notices: Sequence[StoredNotice], *, base_url: str, name: str, now: datetime,
        memo: Memo = _no_memo) -> bytes:
    head = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//jpixd//notice board//JA",
            "CALSCALE:GREGORIAN", "METHOD:PUBLISH", f"X-WR-CALNAME:{_ics_text(name)}",
            "X-WR-TIMEZONE:Asia/Tokyo", "REFRESH-INTERVAL;VALUE=DURATION:PT1H"]
    parts = [_fold(line) + "\r\n" for line in head]
    for s in notices:
        # A kept event keeps the DTSTAMP of when it was first written: that is when this
        # version of it was made.
        parts.append(memo(("ics", base_url, s.id, s.revision, s.last_changed,
                           label_now(s.notice, now)),
                          functools.partial(ics_events, s, base_url=base_url, now=now)))
    parts.append("END:VCALENDAR\r\n")
    return "".join(parts).encode()
