"""The 47 prefectures with their JIS X 0401 codes, and lookups by code or name."""

from __future__ import annotations

import unicodedata

# (code, full name, carrier). NTT East serves Hokkaido, Tohoku, Kanto, Niigata, Nagano
# and Yamanashi; NTT West the rest (its 30 prefectures).
PREFECTURES: tuple[tuple[str, str, str], ...] = (
    ("01", "北海道", "east"), ("02", "青森県", "east"), ("03", "岩手県", "east"),
    ("04", "宮城県", "east"), ("05", "秋田県", "east"), ("06", "山形県", "east"),
    ("07", "福島県", "east"), ("08", "茨城県", "east"), ("09", "栃木県", "east"),
    ("10", "群馬県", "east"), ("11", "埼玉県", "east"), ("12", "千葉県", "east"),
    ("13", "東京都", "east"), ("14", "神奈川県", "east"), ("15", "新潟県", "east"),
    ("16", "富山県", "west"), ("17", "石川県", "west"), ("18", "福井県", "west"),
    ("19", "山梨県", "east"), ("20", "長野県", "east"), ("21", "岐阜県", "west"),
    ("22", "静岡県", "west"), ("23", "愛知県", "west"), ("24", "三重県", "west"),
    ("25", "滋賀県", "west"), ("26", "京都府", "west"), ("27", "大阪府", "west"),
    ("28", "兵庫県", "west"), ("29", "奈良県", "west"), ("30", "和歌山県", "west"),
    ("31", "鳥取県", "west"), ("32", "島根県", "west"), ("33", "岡山県", "west"),
    ("34", "広島県", "west"), ("35", "山口県", "west"), ("36", "徳島県", "west"),
    ("37", "香川県", "west"), ("38", "愛媛県", "west"), ("39", "高知県", "west"),
    ("40", "福岡県", "west"), ("41", "佐賀県", "west"), ("42", "長崎県", "west"),
    ("43", "熊本県", "west"), ("44", "大分県", "west"), ("45", "宮崎県", "west"),
    ("46", "鹿児島県", "west"), ("47", "沖縄県", "west"),
)

CODES: frozenset[str] = frozenset(code for code, _, _ in PREFECTURES)
NAME_BY_CODE: dict[str, str] = {code: name for code, name, _ in PREFECTURES}
CARRIER_BY_CODE: dict[str, str] = {code: carrier for code, _, carrier in PREFECTURES}


def _short(name: str) -> str:
    """東京都 → 東京, 北海道 stays (道 is part of the usual short form's ambiguity)."""
    return name if name == "北海道" else name[:-1]


_BY_NAME: dict[str, str] = {}
for _code, _name, _ in PREFECTURES:
    _BY_NAME[_name] = _code
    _BY_NAME[_short(_name)] = _code


def code_of(value: str) -> str | None:
    """A prefecture code from "13", "1", "東京都" or "東京" (full-width digits too)."""
    text = unicodedata.normalize("NFKC", value).strip()
    if text.isdigit():
        code = text.zfill(2)
        return code if code in CODES else None
    return _BY_NAME.get(text)


def names_in_order() -> list[tuple[str, str]]:
    """(full name, code), longest first, for scanning free text."""
    return sorted(((name, code) for code, name, _ in PREFECTURES), key=lambda x: -len(x[0]))
