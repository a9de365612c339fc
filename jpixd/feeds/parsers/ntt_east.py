"""NTT East's construction/failure pages (flets.com/customer/const2/) and its press-style
outage reports.

What is verified (DOMAIN.md): every 第N報 is a new page at a new URL, laid out as
numbered headings and paragraphs. What is assumed, since the list pages cannot be
fetched from here: per prefecture (or several, 「東京都・神奈川県」), a heading and a table
or cards (`dl`) of notices; a heading that says 工事 or 故障 sets the kind, a 区分/種別
column overrides it (「工事・故障情報」 tables mix both); 「…はありません」 speaks only for
its own section. Columns and card labels are found by their words; rowspan and colspan
are expanded. A section with dates that no table, card or report consumed is reported as
a layout warning, never silently skipped.

Keys survive NTT's edits: a row's own number or link when it has one; else the kind,
the digits of its start and (for construction, whose works are per prefecture) the
prefectures. Never the area or the services, which NTT widens as an outage grows; rows of
one incident under several prefecture headings merge into one notice.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field, replace
from urllib.parse import urljoin

import lxml.html
from lxml import etree

from jpixd import prefectures
from jpixd.feeds.errors import LayoutChanged, ParseError
from jpixd.feeds.html import element_text, parse_document
from jpixd.feeds.normalise import Draft, ItemError, canonical_url
from jpixd.feeds.parsers import ParseResult, press
from jpixd.feeds.parsers.tables import dl_fields, header_map, is_note_row, row_values

_EMPTY = re.compile(r"ありません|ございません|予定はありません|情報はございません")
_DATED = re.compile(r"\d{1,2}\s*月\s*\d{1,2}\s*日|\d{1,2}\s*[:：]\s*\d{2}|\d{1,2}\s*時")
_NOT_NEWS = re.compile(r"更新|掲載|現在|Copyright|©", re.I)
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "caption")
MAX_BODY = 4000


def _section_kind(text: str) -> str | None:
    failure = any(w in text for w in ("故障", "障害"))
    construction = "工事" in text or "メンテナンス" in text
    if failure and construction:
        return None  # 「工事・故障情報」: each row says which (区分)
    return "failure" if failure else "construction" if construction else None


def _start_digits(when: str) -> str:
    """The digits of the start of 「2023年4月3日(月) 7時15分頃～10時08分」: one format or
    another (7:15, 7時15分), the key stays the same while the end is added."""
    start = re.split(r"[~～〜]|から|より", unicodedata.normalize("NFKC", when), maxsplit=1)[0]
    return "".join(ch for ch in start if ch.isdigit())


def row_key(values: dict[str, str], links: list[str], kind: str | None,
            prefs: tuple[str, ...], base: str) -> str:
    if values.get("id"):
        return unicodedata.normalize("NFKC", values["id"]).strip()
    if links:
        return canonical_url(links[0], base) or links[0]
    digits = _start_digits(values.get("when", ""))
    if digits:
        where = "+".join(prefs) if kind != "failure" else ""
        return f"{kind or 'notice'}:{digits}:{where}"
    seed = f"{'+'.join(prefs)}|{values.get('area', '')}|{values.get('services', '')}"
    return "row:" + hashlib.sha256(seed.encode("utf-8")).hexdigest()[:24]


@dataclass
class _Section:
    heading: str
    kind: str | None
    prefs: tuple[str, ...]
    items: int = 0
    text: list[str] = field(default_factory=list)


class _Walker:
    def __init__(self, base: str) -> None:
        self.base = base
        self.result = ParseResult()
        self.section = _Section("", None, ())
        self.sections = [self.section]

    def walk(self, el: etree._Element) -> None:
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag in ("script", "style", "nav"):
            pass
        elif tag in _HEADINGS:
            self._heading(el, tag)
        elif tag == "table" and self._table(el):
            pass
        elif tag == "dl" and self._card(el):
            pass
        else:
            if el.text and tag:
                self.section.text.append(el.text)
            for child in el:
                self.walk(child)
        if el.tail:
            self.section.text.append(el.tail)

    def _heading(self, el: etree._Element, tag: str) -> None:
        text = element_text(el)
        mixed = "工事" in text and ("故障" in text or "障害" in text)
        kind = _section_kind(text) or (None if mixed else self.section.kind)
        codes = prefectures.in_text(text)
        prefs = codes or (() if tag in ("h1", "h2") else self.section.prefs)
        self.section = _Section(text, kind, prefs)
        self.sections.append(self.section)

    def _table(self, table: etree._Element) -> bool:
        found = header_map(table)
        if found is None:
            return False  # a layout table: its cells are read as text
        mapping, rows = found
        for row in rows:
            if not any(c.tag == "td" for c in row) or is_note_row(row):
                continue
            values = row_values(row, mapping)
            tr = row[-1].getparent()
            payload = lxml.html.tostring(tr if tr is not None else row[-1], encoding="unicode")
            links = [urljoin(self.base, a.get("href") or "") for c in dict.fromkeys(row)
                     for a in c.iter("a") if a.get("href")]
            self._add(values, links, payload)
        return True

    def _card(self, dl: etree._Element) -> bool:
        values = dl_fields(dl)
        if len(values) < 2 or not ({"when", "area"} & set(values)):
            return False
        links = [urljoin(self.base, a.get("href") or "") for a in dl.iter("a")
                 if a.get("href")]
        self._add(values, links, lxml.html.tostring(dl, encoding="unicode"))
        return True

    def _add(self, values: dict[str, str], links: list[str], payload: str) -> None:
        sec = self.section
        kind = _section_kind(values.get("category", "")) or sec.kind
        key = row_key(values, links, kind, sec.prefs, self.base)
        sec.items += 1
        if not values.get("when") and not values.get("area") and links:
            # A list of report links (第N報): the fields are on the linked page.
            self.result.drafts.append(Draft(
                external_id=key, title=values.get("title") or values.get("body") or key,
                url=links[0], kind=kind, prefectures=sec.prefs, needs_detail=True,
                categories=(values.get("category", ""),)))
            return
        if not values.get("when") and not values.get("area"):
            self.result.errors.append(ItemError(
                key, "row has neither a date (日時) nor an area (エリア)", payload))
            return
        if kind == "construction" and not values.get("when"):
            self.result.errors.append(ItemError(
                key, "construction row without its date (工事日時)", payload))
            return
        names = "・".join(prefectures.NAME_BY_CODE.get(c, "") for c in sec.prefs)
        area = values.get("area", "")
        word = "工事" if kind == "construction" else "故障" if kind == "failure" else "お知らせ"
        self.result.drafts.append(Draft(
            external_id=key, title=values.get("title") or f"{names} {area}における{word}".strip(),
            body=_body(values), url=links[0] if links else None, kind=kind,
            status=values.get("status"), remarks=values.get("remarks", ""),
            measures=values.get("measures", ""),
            categories=(word, values.get("category", "")), when_text=values.get("when", ""),
            recovered_text=values.get("recovered", ""),
            published_text=values.get("published", ""),
            area_text=f"{names} {area}".strip(), services_text=values.get("services", ""),
            prefectures=sec.prefs,
        ))

    def finish(self) -> ParseResult:
        for sec in self.sections:
            whole = "".join(sec.text)
            text = "\n".join(ln for ln in whole.splitlines() if not _NOT_NEWS.search(ln))
            if _EMPTY.search(whole):
                self.result.says_empty = True
            elif sec.items == 0 and (sec.kind or sec.prefs) and _DATED.search(text):
                self.result.warnings.append(
                    f"section 「{sec.heading[:40]}」 has dated text that no table, card or "
                    "report layout we know could read")
        self.result.drafts = merge(self.result.drafts)
        return self.result


def _body(values: dict[str, str]) -> str:
    """What a reader should see beside the fields: the row's text, and a status, 措置状況
    or 備考 that says more than one word (「北海道エリアは回復しました。その他エリアは…」)."""
    status = values.get("status", "")
    parts = [values.get("body", ""), status if len(status) > 8 else "",
             values.get("measures", ""), values.get("remarks", "")]
    return "\n".join(p for p in parts if p)


def merge(drafts: list[Draft]) -> list[Draft]:
    """Rows of one incident (one key) under several prefecture headings: one draft with
    every prefecture and area."""
    by_key: dict[str, Draft] = {}
    for d in drafts:
        seen = by_key.get(d.external_id)
        if seen is None:
            by_key[d.external_id] = d
            continue
        by_key[d.external_id] = replace(
            seen, prefectures=tuple(dict.fromkeys((*seen.prefectures, *d.prefectures))),
            area_text="、".join(dict.fromkeys(a for a in (seen.area_text, d.area_text) if a)),
            services_text="\n".join(dict.fromkeys(
                s for s in (seen.services_text, d.services_text) if s)))
    return list(by_key.values())


def report(doc: etree._Element, url: str) -> Draft | None:
    """The page as one press-style report, if it is one."""
    text = press.main_text(doc)
    fields = press.sections(text)
    if not press.is_report(fields):
        return None
    start = min((text.find(v) for v in fields.values() if v and v in text), default=0)
    return Draft(
        external_id=canonical_url(url) or url, title=press.title_of(doc),
        body=text[max(start, 0):][:MAX_BODY], url=url, when_text=fields.get("when", ""),
        area_text=fields.get("area", ""), services_text=fields.get("services", ""),
        measures=fields.get("measures", ""), status=fields.get("status"),
        recovered_text=fields.get("recovered", ""), remarks=fields.get("remarks", ""),
        published_text=fields.get("published", ""),
    )


def parse(text: str, *, url: str) -> ParseResult:
    try:
        doc = parse_document(text)
    except (ValueError, etree.ParserError) as exc:
        raise ParseError(f"not an HTML page: {exc}") from None
    walker = _Walker(url)
    walker.walk(doc)
    result = walker.finish()
    if not result.drafts and not result.errors:
        found = report(doc, url)
        if found is not None:
            return ParseResult(drafts=[found])
        if not result.says_empty:
            raise LayoutChanged("no notice table, card or numbered report found and no "
                                "「ありません」: has the page layout changed?")
    return result


def detail(text: str, draft: Draft) -> Draft:
    """A list row's report page (第N報), folded into the row's draft."""
    try:
        doc = parse_document(text)
    except (ValueError, etree.ParserError) as exc:
        raise ParseError(f"report page is not HTML: {exc}") from None
    found = report(doc, draft.url or "")
    if found is None:
        raise LayoutChanged("report page has no numbered fields (発生日時, 影響エリア, …): "
                            "has the layout changed?")
    return replace(found, external_id=draft.external_id, url=draft.url,
                   categories=(*draft.categories, draft.title), kind=draft.kind,
                   prefectures=draft.prefectures)
