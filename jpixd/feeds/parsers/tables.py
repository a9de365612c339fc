"""Reading NTT's tables by what their headers say, not by position, so that a moved or
renamed column does not break a parser."""

from __future__ import annotations

import unicodedata

from lxml import etree

from jpixd.feeds.html import element_text

# Checked in this order: 回復日時 before 日時, 影響サービス before 影響, …
FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("recovered", ("回復日時", "復旧日時", "回復時刻")),
    ("services", ("サービス",)),
    ("when", ("日時", "期間", "実施日", "時間帯", "予定日")),
    ("area", ("エリア", "地域", "対象", "場所", "範囲")),
    ("id", ("no", "番号", "id", "管理")),
    ("status", ("状況", "ステータス", "状態", "措置")),
    ("title", ("件名", "タイトル", "標題", "名称")),
    ("body", ("内容", "概要", "影響", "詳細", "原因", "備考")),
)


def field_of(header: str) -> str | None:
    text = unicodedata.normalize("NFKC", header).strip().lower().replace(".", "")
    for name, words in FIELDS:
        if any(w in text for w in words):
            return name
    return None


def cells(row: etree._Element) -> list[etree._Element]:
    return [c for c in row if isinstance(c.tag, str) and c.tag in ("td", "th")]


def header_map(table: etree._Element) -> tuple[dict[int, str], list[etree._Element]] | None:
    """Column index → field for the first row made of <th> (or the first row), and the
    data rows after it; None if no header names at least two known fields."""
    rows = [r for r in table.iter("tr")]
    if not rows:
        return None
    for i, row in enumerate(rows[:3]):
        heads = cells(row)
        mapping = {j: f for j, c in enumerate(heads) if (f := field_of(element_text(c)))}
        if len(set(mapping.values())) >= 2 and all(c.tag == "th" for c in heads):
            return mapping, rows[i + 1:]
    return None


def key_values(root: etree._Element) -> dict[str, str]:
    """A detail page's label → value pairs: <tr><th>label</th><td>value</td></tr> and
    <dl><dt>label</dt><dd>value</dd></dl>; the first value of a field wins."""
    out: dict[str, str] = {}
    for row in root.iter("tr"):
        cs = cells(row)
        if len(cs) >= 2 and cs[0].tag == "th":
            field = field_of(element_text(cs[0]))
            if field and field not in out:
                out[field] = element_text(cs[1])
    for dl in root.iter("dl"):
        label: str | None = None
        for child in dl:
            if child.tag == "dt":
                label = field_of(element_text(child))
            elif child.tag == "dd" and label and label not in out:
                out[label] = element_text(child)
    return out
