"""Japanese dates and time ranges as NTT writes them, to aware JST datetimes. Pure.

Handles `2026年12月3日(木) 0:00～6:00`, `令和8年12月3日`, `12月3日 23時30分～翌5時00分`,
`午後11時～翌午前5時`, `2026/12/03 23:00～12/04 05:00`, `23時00分～4日(金)5時00分` (an end
with a day only), `3日(木)・4日(金)の0時00分～6時00分` and `3日～5日の各日 0:00～6:00` (one
window a night), `予備日` (a reserve window), `24:00`, `16時30現在` (an as-of time, not a
window), `頃`, `未定`, full-width digits and tildes, and ranges that cross midnight. A year
left out is the one that puts the date nearest the reference time.

Linear by construction: the text is normalised first (NFKC, one space for any run of
white space), then read as a flat list of tokens by one regular expression whose
alternatives are all anchored on a literal (年, 月, 日, 時, `:`) with bounded digit runs;
no alternative can backtrack over a run of spaces or line breaks. At most MAX_SCAN
characters are read: a notice's times are in its first lines, never past 20,000 characters.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from jpixd.model import JST

MAX_SCAN = 20_000
_ERAS = {"令和": 2018, "平成": 1988}
# Years outside this range are not notices about today's networks; refused at parse time.
MIN_YEAR, MAX_YEAR = 1990, 2100

_TOKEN = re.compile(
    r"(?P<date>(?:(?P<era>令和|平成) ?(?P<ey>\d{1,2}|元) ?年 ?|(?P<y>\d{4}) ?年 ?)?"
    r"(?P<mo>\d{1,2}) ?月 ?(?P<d>\d{1,2}) ?日)"
    r"|(?P<time>(?P<ampm>午前|午後)? ?(?P<h>\d{1,2}) ?"
    r"(?::(?P<mi>\d{2})|時(?!間)(?: ?(?P<mi2>\d{1,2}) ?分?)?))"
    r"|(?P<day>(?<![\d月])(?P<dd>\d{1,2}) ?日(?!間))"
    r"|(?P<next>翌日?)"
    r"|(?P<sep>~|から|より|－|—|―|–|-)"
    r"|(?P<dot>・|、|及び|および)"
    r"|(?P<asof>現在)"
    r"|(?P<each>各日)"
    r"|(?P<reserve>予備日)"
    r"|(?P<unknown>未定)"
    r"|(?P<noon>正午)"
)
# What may stand between two tokens that belong together: spaces, a weekday in brackets,
# 「の」, 「頃」, 「まで」, a colon after a label. Anything else breaks the chain.
_GLUE = re.compile(
    r"^(?: |[(（][月火水木金土日祝・休]{1,4}[)）]|の|頃|ごろ|まで|予定|[:：]|にかけて)*$")

# Numeric dates are rewritten to 年月日 first, so the matcher knows one form only and a
# figure such as 「約1.5万回線」 is never read as 5 January.
_YMD = re.compile(r"(?<!\d)(\d{4}) ?[/.\-] ?(\d{1,2}) ?[/.\-] ?(\d{1,2})(?!\d)")
_MD = re.compile(r"(?<![\d/.])(\d{1,2})/(\d{1,2})(?![\d/])")


def normalise_text(text: str) -> str:
    """NFKC (full-width digits and letters to ASCII), one kind of tilde, single spaces."""
    t = unicodedata.normalize("NFKC", text)
    t = t.replace("〜", "~").replace("～", "~")
    return re.sub(r"[ \t\u3000]+", " ", t)


def _flat(text: str) -> str:
    """One line, single spaces, capped: the form the token reader works on."""
    t = normalise_text(text[:MAX_SCAN])
    t = re.sub(r"\s+", " ", t)
    t = _YMD.sub(r"\1年\2月\3日", t)
    return _MD.sub(r"\1月\2日", t)


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime | None
    reserve: bool = False  # 予備日: used only if the planned window cannot be


@dataclass(frozen=True)
class _Tok:
    kind: str
    m: re.Match[str]
    gap: bool  # something other than glue stood before it


@dataclass
class _Point:
    day: date | None = None
    dayonly: int | None = None  # 「4日」 without a month
    clock: tuple[int, int] | None = None
    nextday: bool = False


def _tokens(t: str) -> list[_Tok]:
    out: list[_Tok] = []
    last = 0
    for m in _TOKEN.finditer(t):
        kind = next(k for k in ("date", "time", "day", "next", "sep", "dot", "asof", "each",
                                "reserve", "unknown", "noon") if m.group(k) is not None)
        between = t[last:m.start()]
        out.append(_Tok(kind, m, len(between) > 24 or not _GLUE.match(between)))
        last = m.end()
    return out


def _year(m: re.Match[str], ref: datetime, month: int, day: int) -> int | None:
    era, ey, y = m.group("era"), m.group("ey"), m.group("y")
    if era:
        return _ERAS[era] + (1 if ey == "元" else int(ey))
    if y:
        return int(y)
    today = ref.astimezone(JST).date()
    candidates = []
    for cand in (today.year - 1, today.year, today.year + 1):
        try:
            candidates.append((abs((date(cand, month, day) - today).days), cand))
        except ValueError:
            continue
    return min(candidates)[1] if candidates else None


def _date(m: re.Match[str], ref: datetime) -> date | None:
    month, day = int(m.group("mo")), int(m.group("d"))
    year = _year(m, ref, month, day)
    if year is None or not MIN_YEAR <= year <= MAX_YEAR:
        return None
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _clock(m: re.Match[str]) -> tuple[int, int] | None:
    hour = int(m.group("h"))
    minute = int(m.group("mi") or m.group("mi2") or 0)
    ampm = m.group("ampm")
    if ampm:
        if hour > 12:
            return None
        if ampm == "午後" and hour < 12:
            hour += 12
        elif ampm == "午前" and hour == 12:
            hour = 0
    if hour > 24 or minute > 59 or (hour == 24 and minute):
        return None
    return hour, minute


def _at(day: date, clock: tuple[int, int]) -> datetime:
    hour, minute = clock
    if hour == 24:  # 24:00 is the midnight that ends `day`
        return datetime.combine(day + timedelta(days=1), time(0, 0), JST)
    return datetime.combine(day, time(hour, minute), JST)


def _day_after(base: date, dd: int) -> date | None:
    """「4日」 after `base`: this month, or the next when the day has already passed."""
    for months in (0, 1):
        y, mo = base.year + (base.month + months - 1) // 12, (base.month + months - 1) % 12 + 1
        try:
            cand = date(y, mo, dd)
        except ValueError:
            continue
        if cand >= base:
            return cand
    return None


class _Reader:
    """Walks the tokens once, collecting windows and as-of points."""

    def __init__(self, toks: list[_Tok], ref: datetime) -> None:
        self.toks = toks
        self.ref = ref
        self.i = 0
        self.spans: list[Span] = []
        self.points: list[datetime] = []
        self.last_day: date | None = None

    def peek(self, kind: str, glued: bool = True) -> bool:
        if self.i >= len(self.toks):
            return False
        tok = self.toks[self.i]
        return tok.kind == kind and (not glued or not tok.gap)

    def point(self) -> _Point | None:
        """A date and/or time at the cursor (翌, 日, 時 glued together)."""
        p = _Point()
        start = self.i
        if self.peek("next", glued=False):
            p.nextday = True
            self.i += 1
        if self.i < len(self.toks) and self.toks[self.i].kind in ("date", "day") and (
                self.i == start or not self.toks[self.i].gap):
            tok = self.toks[self.i]
            if tok.kind == "date":
                p.day = _date(tok.m, self.ref)
                if p.day is None:
                    self.i += 1
                    return None
            else:
                p.dayonly = int(tok.m.group("dd"))
            self.i += 1
            if self.peek("next"):  # 「3日(木)翌」 does not occur; 翌 before a time does
                p.nextday = True
                self.i += 1
        if self.i < len(self.toks) and self.toks[self.i].kind in ("time", "noon") and (
                self.i == start or not self.toks[self.i].gap):
            tok = self.toks[self.i]
            p.clock = (12, 0) if tok.kind == "noon" else _clock(tok.m)
            self.i += 1
        if self.i == start or (p.day is None and p.dayonly is None and p.clock is None):
            self.i = start
            return None
        return p

    def resolve(self, p: _Point, base: date | None) -> date | None:
        if p.day is not None:
            return p.day
        if p.dayonly is not None and base is not None:
            return _day_after(base, p.dayonly)
        if base is not None:
            return base + timedelta(days=1) if p.nextday else base
        return None

    def read(self) -> None:
        while self.i < len(self.toks):
            tok = self.toks[self.i]
            reserve = tok.kind == "reserve"
            if reserve or tok.kind not in ("date", "day", "time", "next", "noon"):
                self.i += 1
                if reserve:
                    self.group(reserve=True)
                continue
            if not self.group(reserve=False):
                self.i += 1

    def group(self, *, reserve: bool) -> bool:
        """Dates (「3日・4日の」, 「3日～5日の各日」) then a point or a range."""
        days: list[date] = []
        before = self.i
        first = self.point()
        if first is None:
            return False
        if first.clock is None and (self.peek("dot") or self.peek("sep")) and \
                self._date_list(first, days):
            pass
        else:
            self.i = before
            first = self.point()
            assert first is not None
            days = []
        if days:
            base_point = self.point()
            if base_point is None or base_point.clock is None:
                self.spans.extend(Span(_at(d, (0, 0)), None, reserve) for d in days)
                return True
            after = end_pos = self.i
            for d in days:
                self.i = after
                self._range_from(_Point(day=d, clock=base_point.clock), reserve)
                end_pos = max(end_pos, self.i)
            self.i = end_pos
            return True
        self._range_from(first, reserve)
        return True

    def _date_list(self, first: _Point, days: list[date]) -> bool:
        """「3日(木)・4日(金)の」 or 「3日～5日の各日」: several days sharing one time range."""
        start_day = self.resolve(first, self.last_day)
        if start_day is None:
            return False
        save = self.i
        listed = [start_day]
        if self.peek("sep"):
            self.i += 1
            end = self.point()
            if end is None or end.clock is not None or not self.peek("each"):
                self.i = save
                return False
            self.i += 1
            end_day = self.resolve(end, start_day)
            if end_day is None or not 0 <= (end_day - start_day).days <= 31:
                self.i = save
                return False
            listed = [start_day + timedelta(days=k)
                      for k in range((end_day - start_day).days + 1)]
        else:
            while self.peek("dot"):
                self.i += 1
                nxt = self.point()
                d = self.resolve(nxt, listed[-1]) if nxt is not None else None
                if nxt is None or d is None:
                    self.i = save
                    return False
                listed.append(d)
                if nxt.clock is not None:
                    self.i -= 1  # 「4日(金)の0時00分」: the time is the shared range's start
                    break
            if self.peek("each"):
                self.i += 1
        if len(listed) < 2:
            self.i = save
            return False
        days.extend(listed)
        self.last_day = listed[-1]
        return True

    def _range_from(self, p: _Point, reserve: bool) -> None:
        day = self.resolve(p, self.last_day)
        if day is None and p.clock is not None and self.peek("asof"):
            day = self.ref.astimezone(JST).date()  # 「16時30分現在」 alone: today
        if day is None:
            return
        start = _at(day, p.clock or (0, 0))
        if self.peek("asof"):  # 「16時30分現在」: when the report was written
            self.i += 1
            self.points.append(start)
            return
        self.last_day = day
        end: datetime | None = None
        if self.peek("sep"):
            save = self.i
            self.i += 1
            q = self.point()
            if q is not None:
                end = self._end(q, day, start)
                if end is None:
                    self.i = save + 1
            elif self.peek("unknown"):
                self.i += 1
        if end is None and p.clock is None and p.day is None:
            return  # a bare 「4日」: not a time
        self.spans.append(Span(start, end, reserve))

    def _end(self, q: _Point, day: date, start: datetime) -> datetime | None:
        if q.day is None and q.dayonly is None and q.clock is None:
            return None
        end_day = self.resolve(q, day)
        if end_day is None:
            return None
        end = _at(end_day, q.clock or (24, 0))
        if end <= start and q.day is None and q.dayonly is None:
            end += timedelta(days=1)  # 23:00～5:00 crosses midnight
        if end <= start or end - start > timedelta(days=62):
            return None
        return end


def _read(text: str, ref: datetime) -> _Reader:
    reader = _Reader(_tokens(_flat(text)), ref)
    reader.read()
    return reader


def parse_windows(text: str, ref: datetime) -> list[Span]:
    """Every window in `text`, in order: ranges, and days sharing one range; when the text
    has no range, its first point in time. As-of times (現在) are never windows."""
    reader = _read(text, ref)
    ranges = [s for s in reader.spans if s.end is not None]
    if ranges:
        points = [s for s in reader.spans if s.end is None and s.reserve]
        return list(dict.fromkeys([*ranges, *points]))
    return reader.spans[:1]


def parse_span(text: str, ref: datetime) -> Span | None:
    """The first window in `text`, or its first point in time when it has no window."""
    windows = parse_windows(text, ref)
    return windows[0] if windows else None


def parse_datetime(text: str, ref: datetime) -> datetime | None:
    """A single point in time (e.g. 発生日時); the start of a range if given one."""
    span = parse_span(text, ref)
    return span.start if span else None


def as_of(text: str, ref: datetime) -> datetime | None:
    """The as-of time of a report (「第4報(16時30分現在)」), if it says one."""
    reader = _read(text, ref)
    return reader.points[0] if reader.points else None
