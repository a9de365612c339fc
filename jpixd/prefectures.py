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

# The regions a sign-up form groups prefectures by (each with "select all").
REGIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("北海道・東北", ("01", "02", "03", "04", "05", "06", "07")),
    ("関東", ("08", "09", "10", "11", "12", "13", "14")),
    ("北陸・甲信越", ("15", "16", "17", "18", "19", "20")),
    ("東海", ("21", "22", "23", "24")),
    ("近畿", ("25", "26", "27", "28", "29", "30")),
    ("中国", ("31", "32", "33", "34", "35")),
    ("四国", ("36", "37", "38", "39")),
    ("九州・沖縄", ("40", "41", "42", "43", "44", "45", "46", "47")),
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


# Cities (and a few towns NTT names in outage reports) whose name implies a prefecture.
# A name shared by several prefectures lists them all and is then not used: "only if
# unambiguous". Designated cities and prefectural capitals, plus common cases.
CITIES: dict[str, tuple[str, ...]] = {
    "札幌市": ("01",), "函館市": ("01",), "旭川市": ("01",), "厚真町": ("01",),
    "むかわ町": ("01",), "安平町": ("01",), "伊達市": ("01", "07"),
    "青森市": ("02",), "盛岡市": ("03",), "仙台市": ("04",), "秋田市": ("05",),
    "山形市": ("06",), "福島市": ("07",), "郡山市": ("07",), "水戸市": ("08",),
    "つくば市": ("08",), "宇都宮市": ("09",), "前橋市": ("10",), "高崎市": ("10",),
    "さいたま市": ("11",), "川口市": ("11",), "千葉市": ("12",), "船橋市": ("12",),
    "新宿区": ("13",), "千代田区": ("13",), "渋谷区": ("13",), "八王子市": ("13",),
    "府中市": ("13", "34"), "横浜市": ("14",), "川崎市": ("14",), "相模原市": ("14",),
    "新潟市": ("15",), "富山市": ("16",), "金沢市": ("17",), "福井市": ("18",),
    "甲府市": ("19",), "長野市": ("20",), "松本市": ("20",), "岐阜市": ("21",),
    "静岡市": ("22",), "浜松市": ("22",), "名古屋市": ("23",), "豊田市": ("23",),
    "津市": ("24",), "大津市": ("25",), "京都市": ("26",), "大阪市": ("27",),
    "堺市": ("27",), "東大阪市": ("27",), "神戸市": ("28",), "姫路市": ("28",),
    "奈良市": ("29",), "和歌山市": ("30",), "鳥取市": ("31",), "松江市": ("32",),
    "岡山市": ("33",), "広島市": ("34",), "福山市": ("34",), "山口市": ("35",),
    "徳島市": ("36",), "高松市": ("37",), "松山市": ("38",), "高知市": ("39",),
    "北九州市": ("40",), "福岡市": ("40",), "佐賀市": ("41",), "長崎市": ("42",),
    "熊本市": ("43",), "大分市": ("44",), "宮崎市": ("45",), "鹿児島市": ("46",),
    "那覇市": ("47",),
}


def in_text(text: str) -> tuple[str, ...]:
    """Prefecture codes named in free text (「東京都、神奈川県の一部」); if none, those
    implied by unambiguous city names. Sorted, unique."""
    norm = unicodedata.normalize("NFKC", text)
    # Full names only: no full name lies inside another (京都府 is not in 東京都).
    found = {code for name, code in names_in_order() if name in norm}
    if found:
        return tuple(sorted(found))
    for city, codes in CITIES.items():
        if city in norm and len(codes) == 1:
            found.add(codes[0])
    return tuple(sorted(found))
