"""The notice board as feeds: Atom (RFC 4287) and iCalendar (RFC 5545). Pure.

The Atom document is built with ElementTree, so every text is escaped by construction.
The calendar holds construction windows only (planned work is what a NOC schedules
around): each window is one VEVENT whose UID stays the same across revisions, so a
calendar app moves the event when NTT moves the work, and a cancelled notice's events
say STATUS:CANCELLED so that they disappear instead of lingering.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

from jpixd.mail.render import KIND_LABELS, STATUS_LABELS, local_time
from jpixd.model import NoticeKind, NoticeStatus, StoredNotice, TimeWindow
from jpixd.prefectures import NAME_BY_CODE

ATOM = "http://www.w3.org/2005/Atom"
# XML 1.0 cannot carry these at all (escaping does not help): dropped.
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text: str) -> str:
    return _XML_BAD.sub("", text)


def headline(s: StoredNotice) -> str:
    n = s.notice
    label = STATUS_LABELS.get(n.status, str(n.status))
    return f"【{KIND_LABELS.get(n.kind, '')}・{label}】{n.title}"


# A feed entry's text: what a reader needs to decide whether to open the notice; the
# whole text is on the notice's page. Bounds a feed of 200 entries to a few hundred KB
# whatever a source publishes (a 20,000-character body made a 4 MB calendar).
SUMMARY_BODY_LIMIT = 1000


def summary(s: StoredNotice) -> str:
    n = s.notice
    parts = []
    windows = windows_of(s)
    if windows:
        label = "工事日時" if n.kind == NoticeKind.CONSTRUCTION else "発生日時"
        parts.append(f"{label}: " + "、".join(
            local_time(w.start) + (f" ～ {local_time(w.end)}" if w.end else "")
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


def atom(notices: Sequence[StoredNotice], *, base_url: str, self_url: str, title: str,
         now: datetime) -> bytes:
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    host = urlsplit(base_url).hostname or "localhost"

    def sub(parent: ET.Element, tag: str, text: str | None = None,
            **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            el.text = _x(text)
        return el

    sub(feed, "title", title)
    query = urlsplit(self_url).query
    sub(feed, "id", f"tag:{host},2026:jpixd/notices{'?' + query if query else ''}")
    sub(feed, "updated", max((s.last_changed for s in notices), default=now).isoformat())
    sub(feed, "link", rel="self", href=self_url)
    sub(feed, "link", rel="alternate", href=f"{base_url}/notices")
    author = sub(feed, "author")
    sub(author, "name", "jpixd")
    for s in notices:
        entry = sub(feed, "entry")
        sub(entry, "title", headline(s))
        sub(entry, "id", f"tag:{host},2026:jpixd/notice/{s.id}")
        sub(entry, "updated", s.last_changed.isoformat())
        sub(entry, "published", s.first_seen.isoformat())
        sub(entry, "link", rel="alternate", href=f"{base_url}/notices/{s.id}")
        sub(entry, "category", term=str(s.notice.kind))
        sub(entry, "summary", summary(s))
    body: bytes = ET.tostring(feed, encoding="unicode").encode()
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body


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
    n = s.notice
    if n.windows:
        return list(n.windows)
    if n.starts_at is not None:
        return [TimeWindow(n.starts_at, n.ends_at)]
    return []


def ics(notices: Sequence[StoredNotice], *, base_url: str, name: str, now: datetime) -> bytes:
    host = urlsplit(base_url).hostname or "localhost"
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//jpixd//notice board//JA",
             "CALSCALE:GREGORIAN", "METHOD:PUBLISH", f"X-WR-CALNAME:{_ics_text(name)}",
             "X-WR-TIMEZONE:Asia/Tokyo", "REFRESH-INTERVAL;VALUE=DURATION:PT1H"]
    for s in notices:
        if s.notice.kind != NoticeKind.CONSTRUCTION:
            continue
        cancelled = s.notice.status in (NoticeStatus.CANCELLED, NoticeStatus.WITHDRAWN)
        for i, w in enumerate(windows_of(s)):
            end = w.end if w.end is not None and w.end > w.start else w.start + timedelta(hours=1)
            title = headline(s) + ("（予備日）" if w.reserve else "")
            lines += [
                "BEGIN:VEVENT",
                f"UID:notice-{s.id}-{i}@{host}",
                f"DTSTAMP:{_stamp(now)}",
                f"LAST-MODIFIED:{_stamp(s.last_changed)}",
                f"DTSTART:{_stamp(w.start)}",
                f"DTEND:{_stamp(end)}",
                f"SUMMARY:{_ics_text(title)}",
                f"DESCRIPTION:{_ics_text(summary(s))}",
                f"URL:{base_url}/notices/{s.id}",
                f"STATUS:{'CANCELLED' if cancelled else 'TENTATIVE' if w.reserve else 'CONFIRMED'}",
                "TRANSP:TRANSPARENT",
                "END:VEVENT",
            ]
    lines.append("END:VCALENDAR")
    return ("\r\n".join(_fold(line) for line in lines) + "\r\n").encode()
