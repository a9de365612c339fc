"""NTT East's construction/failure pages (flets.com/customer/const2/): per prefecture, a
heading and a table of notices. Section headings say 工事 or 故障; columns are found by
their header words. The real page cannot be fetched here; the fixtures follow what NTT
East publishes and the parser only relies on headings, tables and header words."""

from __future__ import annotations

import hashlib
import re

import lxml.html
from lxml import etree

from jpixd import prefectures
from jpixd.feeds.errors import ParseError
from jpixd.feeds.html import element_text, parse_document
from jpixd.feeds.normalise import Draft, ItemError
from jpixd.feeds.parsers import ParseResult
from jpixd.feeds.parsers.tables import cells, header_map

_EMPTY = re.compile(r"(ありません|ございません|情報はございません)")


def _section_kind(text: str) -> str | None:
    if any(w in text for w in ("故障", "障害")):
        return "failure"
    if "工事" in text or "メンテナンス" in text:
        return "construction"
    return None


def _row_draft(row: etree._Element, mapping: dict[int, str], kind: str | None,
               pref: str | None, base: str) -> Draft:
    cs = cells(row)
    values: dict[str, str] = {}
    for j, field in mapping.items():
        if j < len(cs) and field not in values:
            values[field] = element_text(cs[j])
    links = [a.get("href") for a in row.iter("a") if a.get("href")]
    pref_name = prefectures.NAME_BY_CODE.get(pref or "", "")
    area = values.get("area", "")
    ident = values.get("id") or (links[0] if links else "")
    if not ident:
        seed = f"{pref}|{values.get('when', '')}|{area}|{values.get('services', '')}"
        ident = "row:" + hashlib.sha256(seed.encode("utf-8")).hexdigest()[:24]
    payload = lxml.html.tostring(row, encoding="unicode")
    if not values.get("when") and not area:
        raise ItemError(ident, "row has neither a date (日時) nor an area (エリア)", payload)
    if kind == "construction" and not values.get("when"):
        raise ItemError(ident, "construction row without its date (工事日時)", payload)
    word = "工事" if kind == "construction" else "故障" if kind == "failure" else "お知らせ"
    title = values.get("title") or f"{pref_name}{area}における{word}".strip()
    return Draft(
        external_id=ident, title=title, body=values.get("body", ""),
        url=links[0] if links else None, kind=kind, status=values.get("status"),
        categories=(word,), when_text=values.get("when", ""),
        recovered_text=values.get("recovered", ""),
        area_text=f"{pref_name} {area}".strip(), services_text=values.get("services", ""),
        prefectures=(pref,) if pref else (),
    )


def parse(text: str, *, url: str) -> ParseResult:
    try:
        doc = parse_document(text)
    except (ValueError, etree.ParserError) as exc:
        raise ParseError(f"not an HTML page: {exc}") from None
    result = ParseResult()
    kind: str | None = None
    pref: str | None = None
    tables = 0
    for el in doc.iter("h1", "h2", "h3", "h4", "h5", "caption", "table"):
        if el.tag != "table":
            heading = element_text(el)
            kind = _section_kind(heading) or kind
            codes = prefectures.in_text(heading)
            if len(codes) == 1:
                pref = codes[0]
            elif el.tag in ("h1", "h2"):
                pref = None
            continue
        found = header_map(el)
        if found is None:
            continue
        tables += 1
        mapping, rows = found
        for row in rows:
            if not any(c.tag == "td" for c in cells(row)):
                continue
            try:
                result.drafts.append(_row_draft(row, mapping, kind, pref, url))
            except ItemError as err:
                result.errors.append(err)
    if tables == 0 and not _EMPTY.search(element_text(doc)):
        raise ParseError("no notice table found and no 'no notices' message: "
                         "has the page layout changed?")
    return result
