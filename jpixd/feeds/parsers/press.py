"""NTT's press-style outage reports: a title 「…について(第4報)」 and numbered headings with
paragraphs, no table (「1.発生日時」「2.影響エリア」「3.影響サービスおよび影響規模」
「6.措置状況・復旧見込」), as NTT East publishes every 第N報 at a new URL (verified from its
2011, 2018 and 2019 reports). Used by the NTT East parser for report pages and by the
NTT West parser for detail pages without a field table (West's press layout is assumed).
"""

from __future__ import annotations

import copy
import re
import unicodedata

from lxml import etree

from jpixd.feeds.html import element_text
from jpixd.feeds.parsers.tables import field_of

# 「1.発生日時」, 「２．影響エリア」, 「(1) 発生日時」, 「1 発生日時：…」 at the start of a line.
_HEADING = re.compile(
    r"^\s*(?:\d{1,2}[.．、)]|\(\d{1,2}\)|[①-⑳]|[■●◆□]) ?([^\d:：\n][^:：\n]{1,23}?)\s*"
    r"(?:[:：]\s*(.*))?$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NAV = re.compile(r"nav|menu|side|breadcrumb|footer|header|related|backnumber|archive", re.I)
# Headings that carry fields; a report needs at least two of them.
_WANTED = ("when", "area", "services", "measures", "recovered", "status", "body", "remarks")


def main_text(doc: etree._Element) -> str:
    """The page's text without navigation, side menus (a list of earlier reports) and
    footers: a 第4報 page must not read as report 1 because its menu lists 第1報."""
    doc = copy.deepcopy(doc)  # the caller's tree stays whole
    body = next(iter(doc.iter("main", "article")), None)
    root = body if body is not None else doc
    for el in list(root.iter("nav", "aside", "header", "footer", "div", "ul", "section")):
        marker = f"{el.get('class', '')} {el.get('id', '')} {el.get('role', '')}"
        if el.tag in ("nav", "aside", "footer", "header") or _NAV.search(marker):
            parent = el.getparent()
            if parent is not None:
                # lxml parses control characters into text but refuses them when text is
                # set: the kept tail goes without them.
                tail = _CONTROL.sub("", el.tail or "")
                parent.remove(el)
                if tail:  # keep the text that followed the removed element
                    prev = el.getprevious()
                    if prev is not None:
                        prev.tail = (prev.tail or "") + tail
                    else:
                        parent.text = (parent.text or "") + tail
    return element_text(root)


def sections(text: str) -> dict[str, str]:
    """Field → text of each numbered heading that names a field we know."""
    out: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []

    def close() -> None:
        if current and current not in out and any(lines):
            out[current] = "\n".join(ln for ln in lines if ln).strip()

    for raw in text.splitlines():
        line = unicodedata.normalize("NFKC", raw).strip()
        m = _HEADING.match(raw.strip()) or _HEADING.match(line)
        if m and len(line) <= 40:
            # Every numbered heading ends the section before it, known or not
            # (「5.工事予定」 must not run into 影響サービス).
            close()
            field = field_of(m.group(1))
            current, lines = field, [m.group(2) or ""]
            continue
        if current:
            lines.append(raw.strip())
    close()
    return {k: v for k, v in out.items() if k in _WANTED}


def title_of(doc: etree._Element) -> str:
    for tag in ("h1", "h2", "title"):
        el = next(iter(doc.iter(tag)), None)
        if el is not None and element_text(el).strip():
            return element_text(el).strip()
    return ""


def is_report(fields: dict[str, str]) -> bool:
    return len(fields) >= 2 and bool({"when", "area", "services"} & set(fields))
