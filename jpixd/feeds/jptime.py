"""Japanese dates and time ranges as NTT writes them, to aware JST datetimes. Pure.

Handles `2026年12月3日(木) 0:00～6:00`, `令和8年12月3日`, `12月3日 23時30分～翌5時00分`,
`2026/12/03 23:00～12/04 05:00`, `24:00` (midnight that ends a day), full-width digits
and tildes, and ranges that cross midnight. A year left out is the one that puts the
date nearest the reference time (a notice from late December about 1月5日 means next year).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from jpixd.model import JST

_ERAS = {"令和": 2018, "平成": 1988}

_DATE = (r"(?:(?P<{p}era>令和|平成)\s*(?P<{p}ey>\d{{1,2}}|元)\s*年|(?P<{p}y>\d{{4}})\s*年)?"
         r"\s*(?P<{p}mo>\d{{1,2}})\s*月\s*(?P<{p}d>\d{{1,2}})\s*日")
_WEEKDAY = r"(?:\s*[(（][月火水木金土日祝・休]+[)）])?"
_TIME = r"(?P<{p}h>\d{{1,2}})\s*(?:[:：]\s*(?P<{p}mi>\d{{2}})|時\s*(?:(?P<{p}mi2>\d{{1,2}})\s*分)?)"
_PART = (r"(?P<{p}next>翌日?\s*)?(?:" + _DATE + _WEEKDAY + r")?\s*(?:" + _TIME + r")?")
_SEP = r"\s*(?:~|-|－|—|―|から|より)\s*"

_START = re.compile(_PART.format(p="s"))
_RANGE = re.compile(_PART.format(p="s") + _SEP + _PART.format(p="e"))

# Numeric dates are rewritten to 年月日 first, so the matcher knows one form only and a
# figure such as 「約1.5万回線」 is never read as 5 January.
_YMD = re.compile(r"(?<!\d)(\d{4})\s*[/.\-]\s*(\d{1,2})\s*[/.\-]\s*(\d{1,2})(?!\d)")
_MD = re.compile(r"(?<![\d/.])(\d{1,2})/(\d{1,2})(?![\d/])")


def normalise_text(text: str) -> str:
    """NFKC (full-width digits and letters to ASCII), one kind of tilde, single spaces."""
    t = unicodedata.normalize("NFKC", text)
    t = t.replace("〜", "~").replace("～", "~")
    return re.sub(r"[ \t\u3000]+", " ", t)


def _canonical_dates(text: str) -> str:
    t = _YMD.sub(r"\1年\2月\3日", text)
    return _MD.sub(r"\1月\2日", t)


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime | None


def _year(m: re.Match[str], p: str, ref: datetime, month: int, day: int) -> int:
    era, ey, y = m.group(f"{p}era"), m.group(f"{p}ey"), m.group(f"{p}y")
    if era:
        return _ERAS[era] + (1 if ey == "元" else int(ey))
    if y:
        return int(y)
    # No year: the candidate nearest the reference (handles December → January).
    today = ref.astimezone(JST).date()
    candidates = []
    for cand in (today.year - 1, today.year, today.year + 1):
        try:
            candidates.append((abs((date(cand, month, day) - today).days), cand))
        except ValueError:
            continue
    return min(candidates)[1] if candidates else today.year


def _date(m: re.Match[str], p: str, ref: datetime) -> date | None:
    if not m.group(f"{p}mo"):
        return None
    month, day = int(m.group(f"{p}mo")), int(m.group(f"{p}d"))
    try:
        return date(_year(m, p, ref, month, day), month, day)
    except ValueError:
        return None


def _clock(m: re.Match[str], p: str) -> tuple[int, int] | None:
    if m.group(f"{p}h") is None:
        return None
    hour = int(m.group(f"{p}h"))
    minute = int(m.group(f"{p}mi") or m.group(f"{p}mi2") or 0)
    if hour > 24 or minute > 59 or (hour == 24 and minute):
        return None
    return hour, minute


def _at(day: date, clock: tuple[int, int]) -> datetime:
    hour, minute = clock
    if hour == 24:  # 24:00 is the midnight that ends `day`
        return datetime.combine(day + timedelta(days=1), time(0, 0), JST)
    return datetime.combine(day, time(hour, minute), JST)


def parse_span(text: str, ref: datetime) -> Span | None:
    """The first date (with optional time) or date-time range in `text`.

    Times followed by 現在 ("as of") are not spans: 第4報(16時30分現在) says when the
    report was written, not when anything happens.
    """
    t = _canonical_dates(normalise_text(text))
    for m in _RANGE.finditer(t):
        span = _range(m, t, ref)
        if span is not None:
            return span
    for m in _START.finditer(t):
        day = _date(m, "s", ref)
        if day is None or _as_of(t, m.end()):
            continue
        clock = _clock(m, "s") or (0, 0)
        return Span(_at(day, clock), None)
    return None


def _as_of(text: str, end: int) -> bool:
    return text[end:end + 4].lstrip().startswith("現在")


def _range(m: re.Match[str], text: str, ref: datetime) -> Span | None:
    start_day = _date(m, "s", ref)
    if start_day is None:
        return None
    start_clock = _clock(m, "s") or (0, 0)
    start = _at(start_day, start_clock)
    end_day = _date(m, "e", ref)
    end_clock = _clock(m, "e")
    if end_day is None and end_clock is None:
        return None
    if _as_of(text, m.end()):
        return None
    if end_day is None:
        end_day = start_day + timedelta(days=1) if m.group("enext") else start_day
    end = _at(end_day, end_clock or (24, 0))
    if end <= start and m.group("emo") is None:
        end += timedelta(days=1)  # 23:00～5:00 crosses midnight
    return Span(start, end)


def parse_datetime(text: str, ref: datetime) -> datetime | None:
    """A single point in time (e.g. 発生日時); the start of a range if given one."""
    span = parse_span(text, ref)
    return span.start if span else None
