"""NTT West's construction/failure RSS, whose items link to detail pages that hold the
fields (発生日時, 影響エリア, 影響サービスおよび影響規模, 措置状況・復旧見込, 回復日時).

Two steps: `parse` reads the RSS (the poller then fetches the detail page of each new or
changed item, one at a time) and `detail` folds a detail page into the item's Draft.
Whether NTT West updates one detail page per incident or adds a page per report is not
known (DOMAIN.md): the id is the detail URL, and a report at a new URL is linked to the
notice it continues by `jpixd.feeds.identity`. Detail pages are read as a field table,
cards (`dl`), or a press-style report with numbered headings (assumed, as NTT East's).
"""

from __future__ import annotations

import re
from dataclasses import replace

from lxml import etree

from jpixd.feeds.errors import LayoutChanged, ParseError
from jpixd.feeds.html import parse_document
from jpixd.feeds.normalise import Draft, ItemError
from jpixd.feeds.parsers import ParseResult, press, rss
from jpixd.feeds.parsers.tables import key_values


def parse(text: str, *, url: str) -> ParseResult:
    result = rss.parse(text, url=url)
    kept = []
    for d in result.drafts:
        if not d.url:
            result.errors.append(ItemError(d.external_id, "item has no link to its detail "
                                                          "page", d.title))
            continue
        kept.append(replace(d, needs_detail=True))
    result.drafts = kept
    return result


def _report_number(title: str, page: str) -> int | None:
    """The report's own number: its title's, else the first in the main text (the side
    menu of earlier reports is not part of it)."""
    for text in (title, page):
        if m := re.search(r"第\s*([0-9０-９]{1,6})\s*報", text):
            return int(m.group(1).translate(_DIGITS))
    return None


def detail(text: str, draft: Draft) -> Draft:
    """The item with the detail page's fields: a field table or cards (`dl`), else a
    press-style report with numbered headings. LayoutChanged if the page has neither."""
    try:
        doc = parse_document(text)
    except (ValueError, etree.ParserError) as exc:
        raise ParseError(f"detail page is not HTML: {exc}") from None
    fields = key_values(doc)
    main = press.main_text(doc)
    if not ({"when", "area", "services"} & set(fields)):
        numbered = press.sections(main)
        if not press.is_report(numbered):
            raise LayoutChanged("detail page has no field table, cards or numbered report "
                                "(発生日時, 影響エリア, …): has the layout changed?")
        fields = numbered
    title = press.title_of(doc) or draft.title
    # 措置状況・復旧見込 is news worth reading; a one-word 状況 cell (予定) is not.
    status = fields.get("status", "")
    body_parts = [fields.get("body", ""), status if len(status) > 8 else "",
                  fields.get("measures", ""), fields.get("remarks", "")]
    return replace(
        draft,
        title=title,
        # The RSS title keeps its 【故障】/（回復） words for judging kind and status.
        categories=(*draft.categories, draft.title),
        body="\n".join(p for p in body_parts if p) or draft.body,
        status=fields.get("status"),
        measures=fields.get("measures", ""),
        remarks=fields.get("remarks", ""),
        when_text=fields.get("when", ""),
        recovered_text=fields.get("recovered", ""),
        published_text=fields.get("published", ""),
        area_text=fields.get("area", ""),
        services_text=fields.get("services", ""),
        report_number=_report_number(title, main),
    )


_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")
