"""NTT West's construction/failure RSS, whose items link to detail pages that hold the
fields (発生日時, 影響エリア, 影響サービスおよび影響規模, 措置状況・復旧見込, 回復日時).

Two steps: `parse` reads the RSS (the poller then fetches the detail page of each new or
changed item, one at a time) and `detail` folds a detail page into the item's Draft.
We assume a notice keeps its detail URL across its reports (第1報, 第2報, … update the
same page), which is how NTT West's report pages read; the id is that URL.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace

from lxml import etree

from jpixd.feeds.errors import ParseError
from jpixd.feeds.html import element_text, parse_document
from jpixd.feeds.normalise import Draft, ItemError
from jpixd.feeds.parsers import ParseResult, rss
from jpixd.feeds.parsers.tables import key_values


def fingerprint(draft: Draft) -> str:
    """What the list says about an item: when it changes, the detail page is fetched."""
    seed = "|".join([draft.title, draft.body, draft.url or "",
                     draft.published.isoformat() if draft.published else ""])
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()


def parse(text: str, *, url: str) -> ParseResult:
    result = rss.parse(text, url=url)
    kept = []
    for d in result.drafts:
        if not d.url:
            result.errors.append(ItemError(d.external_id, "item has no link to its detail "
                                                          "page", d.title))
            continue
        kept.append(d)
    result.drafts = kept
    return result


def detail(text: str, draft: Draft) -> Draft:
    """The item with the detail page's fields. ParseError if the page has none of them."""
    try:
        doc = parse_document(text)
    except (ValueError, etree.ParserError) as exc:
        raise ParseError(f"detail page is not HTML: {exc}") from None
    fields = key_values(doc)
    if not fields:
        raise ParseError("detail page has no field table (発生日時, 影響エリア, …): "
                         "has the layout changed?")
    h1 = next(iter(doc.iter("h1")), None)
    page_text = element_text(doc)
    report = re.search(r"第\s*([0-9０-９]+)\s*報", page_text)
    # 措置状況・復旧見込 is news worth reading; a one-word 状況 cell (予定) is not.
    status = fields.get("status", "")
    body_parts = [fields.get("body", ""), status if len(status) > 8 else ""]
    return replace(
        draft,
        title=element_text(h1) if h1 is not None else draft.title,
        # The RSS title keeps its 【故障】/（回復） words for judging kind and status.
        categories=(*draft.categories, draft.title),
        body="\n".join(p for p in body_parts if p) or draft.body,
        status=fields.get("status"),
        when_text=fields.get("when", ""),
        recovered_text=fields.get("recovered", ""),
        area_text=fields.get("area", ""),
        services_text=fields.get("services", ""),
        report_number=int(report.group(1).translate(_DIGITS)) if report else None,
    )


_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")
