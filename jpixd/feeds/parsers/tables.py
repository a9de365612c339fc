"""Reading NTT's tables by what their headers say, not by position, so that a moved or
renamed column does not break a parser; `rowspan`/`colspan` are expanded first, so a
continuation row carries the cells it shares with the row above."""

from __future__ import annotations

import unicodedata

from lxml import etree

from jpixd.feeds.html import element_text

# Checked in this order: 掲載日時 before 日時, 回復日時 before 日時, 影響サービス before
# 影響, 措置状況 before 状況, …
FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("published", ("掲載", "更新日", "公開", "お知らせ日")),
    ("recovered", ("回復日時", "復旧日時", "回復時刻", "復旧時刻")),
    ("services", ("サービス",)),
    ("when", ("日時", "期間", "実施日", "時間帯", "予定日", "発生時刻")),
    ("area", ("エリア", "地域", "対象", "場所", "範囲")),
    ("id", ("no", "番号", "id", "管理")),
    ("measures", ("措置", "復旧見込", "対応状況")),
    ("status", ("状況", "ステータス", "状態")),
    ("remarks", ("備考", "補足", "お知らせ事項")),
    ("category", ("区分", "種別", "種類")),
    ("title", ("件名", "タイトル", "標題", "名称")),
    ("body", ("内容", "概要", "影響", "詳細", "原因")),
)
MAX_SPAN = 50  # a colspan/rowspan larger than any real table: capped, not trusted


def field_of(header: str) -> str | None:
    text = unicodedata.normalize("NFKC", header).strip().lower().replace(".", "")
    if len(text) > 30:
        return None  # a paragraph, not a label
    for name, words in FIELDS:
        if any(w in text for w in words):
            return name
    return None


def cells(row: etree._Element) -> list[etree._Element]:
    return [c for c in row if isinstance(c.tag, str) and c.tag in ("td", "th")]


def _span(cell: etree._Element, attr: str) -> int:
    try:
        return max(1, min(int(cell.get(attr, "1")), MAX_SPAN))
    except ValueError:
        return 1


def grid(table: etree._Element) -> list[list[etree._Element]]:
    """The table's rows with every spanned cell repeated where it stands."""
    rows: list[list[etree._Element]] = []
    pending: dict[int, tuple[etree._Element, int]] = {}  # column → (cell, rows left)
    for tr in table.iter("tr"):
        row: list[etree._Element] = []
        col = 0
        source = iter(cells(tr))
        while True:
            if col in pending:
                cell, left = pending[col]
                row.append(cell)
                if left <= 1:
                    del pending[col]
                else:
                    pending[col] = (cell, left - 1)
                col += 1
                continue
            nxt = next(source, None)
            if nxt is None:
                break
            down = _span(nxt, "rowspan")
            for _ in range(_span(nxt, "colspan")):
                row.append(nxt)
                if down > 1:
                    pending[col] = (nxt, down - 1)
                col += 1
        # Spans from above that reach past this row's own cells.
        while col in pending:
            cell, left = pending.pop(col)
            row.append(cell)
            if left > 1:
                pending[col] = (cell, left - 1)
            col += 1
        rows.append(row)
    return rows


def header_map(table: etree._Element) -> tuple[dict[int, str], list[list[etree._Element]]] | None:
    """Column index → field for the header (one row of <th>, or two when the first
    groups columns with colspan: 「対象」 over 「市区町村」「地域」), and the data rows
    after it (expanded); None if no header names at least two known fields. Columns that
    share a field keep their text together."""
    rows = grid(table)
    for i, row in enumerate(rows[:3]):
        if not row or not all(c.tag == "th" for c in row):
            continue
        mapping = {j: f for j, c in enumerate(row) if (f := field_of(element_text(c)))}
        if len(set(mapping.values())) < 2:
            continue
        below = rows[i + 1] if i + 1 < len(rows) else []
        if below and all(c.tag == "th" for c in below):
            for j, c in enumerate(below):  # sub-headers refine a grouped column
                if (f := field_of(element_text(c))) and j < len(row) and row[j] is not c:
                    mapping.setdefault(j, f)
            i += 1
        return mapping, rows[i + 1:]
    return None


def row_values(row: list[etree._Element], mapping: dict[int, str]) -> dict[str, str]:
    """Field → text of one expanded row; a cell spanning several columns counts once."""
    parts: dict[str, list[str]] = {}
    used: set[int] = set()
    for j, name in sorted(mapping.items()):
        if j < len(row) and id(row[j]) not in used:
            used.add(id(row[j]))
            parts.setdefault(name, []).append(element_text(row[j]))
    return {k: " ".join(p for p in v if p) for k, v in parts.items()}


def is_note_row(row: list[etree._Element]) -> bool:
    """A row that is one cell across the table (「※工事の時間帯は前後する場合があります。」)."""
    return len(row) > 1 and len({id(c) for c in row}) == 1


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
        out.update({k: v for k, v in dl_fields(dl).items() if k not in out})
    return out


def dl_fields(dl: etree._Element) -> dict[str, str]:
    """One <dl>'s labelled values (a card)."""
    out: dict[str, str] = {}
    label: str | None = None
    for child in dl.iter("dt", "dd"):
        if child.tag == "dt":
            label = field_of(element_text(child))
        elif label and label not in out:
            out[label] = element_text(child)
    return out
