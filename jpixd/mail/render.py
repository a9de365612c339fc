"""A delivery as the exact MIME message that goes out. Pure apart from template loading.

ISO-2022-JP (7-bit; the codec returns to ASCII before every line break) by default, with
the whole message in UTF-8 when any text is outside JIS X 0208 (①, ㈱, 髙 …): never a
'?'. Half-width katakana, which ISO-2022-JP does not allow, become full-width first.
Nothing from a feed reaches a header unsanitised: control characters become spaces, so a
title with CR/LF and "Bcc:" stays one Subject header.
"""

from __future__ import annotations

import base64
import functools
import hmac
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, tzinfo
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import jinja2

from jpixd import phrases
from jpixd.config import MailConfig
from jpixd.mail.templating import PerNotice
from jpixd.model import JST, Change, Notice, NoticeStatus, Subscriber
from jpixd.prefectures import NAME_BY_CODE

if TYPE_CHECKING:
    from jpixd.web.links import LinkBuilder

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u0085]+")
_HALFWIDTH = "\uff61-\uff9f"  # half-width katakana and its marks, as a class's range
_HALFWIDTH_KANA = re.compile(f"[{_HALFWIDTH}]+")
_BLANK_RUNS = re.compile(r"\n{3,}")
# Display columns: 20 full-width characters. A phone's mail app shows 20–22 of them on a
# line; a longer line is broken again by the app, between any two characters (a comb of
# long and short lines, 「大阪市此/花区」: the phone-width images the browser tests save).
# Business mail's 30–35 read well only on a desktop; 20 reads well on both.
WRAP_COLUMNS = 40

KIND_LABELS = {"construction": "工事", "failure": "故障"}
CARRIER_LABELS = {"east": "NTT東日本", "west": "NTT西日本"}
STATUS_LABELS = {
    NoticeStatus.SCHEDULED: "予定", NoticeStatus.IN_PROGRESS: "実施中",
    NoticeStatus.COMPLETED: "完了", NoticeStatus.CANCELLED: "中止",
    NoticeStatus.OCCURRED: "発生中", NoticeStatus.RECOVERED: "回復",
    NoticeStatus.POSTPONED: "延期", NoticeStatus.PARTIALLY_RECOVERED: "一部回復（復旧作業中）",
    NoticeStatus.WITHDRAWN: "掲載終了",
}


@dataclass(frozen=True)
class Rendered:
    data: bytes  # the whole message, CRLF line ends
    sender: str
    recipient: str
    subject: str
    message_id: str
    charset: str


MAX_SUBJECT = 200  # characters: about 600 octets encoded, far below any MTA's limit
# Control characters a body may not carry (NUL, BEL, ESC would switch a reader's JIS
# decoder); tab and line feed stay.
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
MAX_LINE = 900  # octets, under SMTP's 998 with room for ISO-2022-JP's escapes
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


def header_text(text: str, limit: int = MAX_SUBJECT) -> str:
    """One line, no control characters, at most `limit` characters (with an ellipsis):
    safe in a header whatever a feed sent."""
    one = _CONTROL.sub(" ", text).strip()
    return one if len(one) <= limit else one[:limit - 1].rstrip() + "…"


def body_text(text: str) -> str:
    return _BODY_CONTROL.sub("", text)


# Text decoded from Shift_JIS through cp932 uses Microsoft's code points for a few JIS
# characters; ISO-2022-JP wants the JIS ones (the "wave dash problem").
_CP932_TO_JIS = str.maketrans({"\uff5e": "\u301c", "\u2225": "\u2016", "\uff0d": "\u2212",
                               "\uffe0": "\u00a2", "\uffe1": "\u00a3", "\uffe2": "\u00ac"})


_CP932_CHARS = "".join(map(chr, _CP932_TO_JIS))
_CP932_FORMS = re.compile(f"[{_CP932_CHARS}]")


def jis_forms(text: str) -> str:
    # translate() with a table looks up every character in Python; most text has none
    # of the six, which the regex finds out at C speed.
    return text.translate(_CP932_TO_JIS) if _CP932_FORMS.search(text) else text


def _fullwidth_kana(text: str) -> str:
    return _HALFWIDTH_KANA.sub(lambda m: unicodedata.normalize("NFKC", m.group(0)), text)


# Half-width kana or a CP932 form: what `_in_jis_forms` changes. One search for both
# finds out that a body has neither (nearly every one) at twice the speed of the
# half-width search alone, and a third of the two passes it saves.
_NOT_JIS_FORMS = re.compile(f"[{_HALFWIDTH}{_CP932_CHARS}]")


def _in_jis_forms(text: str, iso2022: bool) -> str:
    """Half-width kana made full-width; with ISO-2022-JP, CP932's forms made JIS's."""
    if not _NOT_JIS_FORMS.search(text):
        return text
    text = _fullwidth_kana(text)
    return jis_forms(text) if iso2022 else text


def fits_jis(text: str) -> bool:
    try:
        text.encode("iso2022_jp")
    except UnicodeEncodeError:
        return False
    return True


# A notice's subject and the sender's name are the same for all its recipients.
_fits_jis_cached = functools.lru_cache(maxsize=1024)(fits_jis)


@functools.lru_cache(maxsize=8)
def _date_header(second: datetime, tz: tzinfo = JST) -> str:
    """The Date header, once per second rather than once per mail."""
    return format_datetime(second.astimezone(tz))


def _width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def wrap(text: str, columns: int = WRAP_COLUMNS) -> str:
    """Break long lines at `columns` display columns. A URL is kept whole on a line of its
    own (so that a mail client can follow it), unless it is itself longer than any line
    may be."""
    return "\n\n".join(_wrap_block(block, columns) for block in text.split("\n\n"))


@functools.lru_cache(maxsize=1024)
def _wrap_block(block: str, columns: int) -> str:
    # A notice's paragraphs are the same for every recipient but the one that greets
    # them: a look-up each, instead of one for each of its thirty-odd lines.
    return "\n".join(_wrap_line(line, columns) for line in block.split("\n"))


@functools.lru_cache(maxsize=4096)
def _wrap_line(line: str, columns: int) -> str:
    # Cached: a notice's lines are the same for every recipient.
    if 2 * len(line) <= columns or sum(_width(c) for c in line) <= columns:
        return line
    if "://" in line:
        pieces: list[str] = []
        last = 0
        for m in _URL.finditer(line):
            pieces += [_wrap_line(line[last:m.start()].strip(), columns),
                       *_chunks(m.group(0), MAX_LINE)]
            last = m.end()
        pieces.append(_wrap_line(line[last:].strip(), columns))
        return "\n".join(p for p in pieces if p)
    return _wrap_text(line, columns)


def _chunks(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


# Characters a Japanese line does not start with (行頭禁則): closing brackets, punctuation,
# the prolonged sound mark and small kana.
_NO_LINE_START = frozenset("、。，．,.・：；:;？！?!ー）」』】〕〉》〙〗］｝’”ぁぃぅぇぉっゃゅょゎ"
                           "ァィゥェォッャュョヮヵヶ々〜～")


# A line is a list when 「、」 parts it into three or more items this short (a locality
# list, services): it is broken between items, never inside one (「大阪市/北区」).
_LIST_ITEM_MAX = 16


def _segments(line: str, columns: int) -> list[str]:
    """What a line may be broken between: a list's items (each with its 「、」), else
    BudouX's phrases; an item too long for a line is broken between its phrases."""
    items = line.split("、")
    if len(items) < 3 or max(len(i) for i in items) > _LIST_ITEM_MAX:
        return _kept_whole(phrases.split(line))
    out: list[str] = []
    for i, item in enumerate(items):
        piece = item + ("、" if i < len(items) - 1 else "")
        wide = sum(_width(c) for c in piece) > columns
        out.extend(phrases.split(piece) if wide else [piece])
    return _kept_whole(out)


_WEEKDAY = re.compile(r"\([月火水木金土日]\)")
_DATED, _CLOCK = re.compile(r"\([月火水木金土日]\) $"), re.compile(r"\d{1,2}:\d{2}")
_NUMBER_GOES_ON = re.compile(r"[0-9０-９年月日時分秒:：.,%]")


def _kept_whole(segments: list[str]) -> list[str]:
    """Segments split at spaces too (an address, a telephone number or a mail address is
    a segment of its own, so it moves to the next line whole: 「noc@exampl/e.jp」), and
    none beginning with a character a line must not start with (「：調査中」): such a
    character stays with the segment before it. A number stays whole with its unit
    (BudouX cuts 「202/6年」), and a date with its weekday and time."""
    out: list[str] = []
    for segment in segments:
        for part in re.split(r"(?<= )(?=\S)", segment):
            if not out:
                out.append(part)
                continue
            lead = 0
            if (out[-1][-1:].isdigit() and _NUMBER_GOES_ON.match(part)) or \
                    (_DATED.search(out[-1]) and _CLOCK.match(part)):
                lead = len(part)
            elif _WEEKDAY.match(part):  # 「12月7日/(月)」: a date and its weekday
                lead = 3
            while lead < len(part) and part[lead] in _NO_LINE_START:
                lead += 1
            out[-1] += part[:lead]
            if part[lead:].isspace():  # a space stays at the end of its line
                out[-1] += part[lead:]
            elif part[lead:]:
                out.append(part[lead:])
    return [s for s in out if s]


def _wrap_text(line: str, columns: int) -> str:
    """Break between phrases (BudouX's), or between a list's items, not inside a word
    (「大阪市中/央区」, reader review), keeping numbers, addresses and times whole; a
    phrase longer than a line is broken between characters, never before one a line
    must not start with."""
    out: list[str] = []
    current, used = "", 0
    for phrase in _segments(line, columns):
        w = sum(_width(c) for c in phrase)
        if used + w <= columns:
            current, used = current + phrase, used + w
            continue
        if current.strip():
            out.append(current.rstrip())
        phrase = phrase.lstrip()
        current, used = "", 0
        for ch in phrase:
            cw = _width(ch)
            if used + cw > columns and current:
                if ch in _NO_LINE_START and len(current) > 1:
                    # 追い出し: the last character goes down with the one that follows it.
                    out.append(current[:-1])
                    current, used = current[-1], _width(current[-1])
                else:
                    out.append(current)
                    current, used = "", 0
            current, used = current + ch, used + cw
    out.append(current.rstrip())
    return "\n".join(out)


@functools.lru_cache(maxsize=4)
def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod="sha256")


def _one_click(url: str) -> list[tuple[str, str]]:
    """RFC 8058 §3.1: the one-click POST is announced for an HTTPS link only."""
    if url.startswith("https://"):
        return [("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
    return []


def unsubscribe_token(key: bytes, subscriber_id: int) -> str:
    # A copy of the keyed state: the key's padding is hashed once, not once per mail.
    mac = _keyed(key).copy()
    mac.update(f"unsubscribe:{subscriber_id}".encode())
    return f"{subscriber_id}.{mac.hexdigest()[:32]}"


def check_unsubscribe_token(key: bytes, token: str) -> int | None:
    """The subscriber id a token was made for, or None. Strangers send these: ASCII digits
    only (「²」 and 「١」 are digits to str.isdigit), a bounded id, bytes compared."""
    sid, _, _mac = token.partition(".")
    if not (sid.isascii() and sid.isdigit() and len(sid) <= 18) or not token.isascii():
        return None
    return int(sid) if hmac.compare_digest(unsubscribe_token(key, int(sid)).encode(),
                                           token.encode()) else None


# Where a subscriber's own signed link goes, in a mail made for nobody in particular.
PER_SUBSCRIBER = "（購読者ごとのリンクが入ります）"


class Recipient:
    """A subscriber as the templates see it: its fields, and its own signed links (empty
    when `[web] base_url` is not set)."""

    def __init__(self, sub: Subscriber, manage_url: str = "", unsubscribe_url: str = "",
                 calendar_url: str = "") -> None:
        self._sub = sub
        self.manage_url, self.unsubscribe_url = manage_url, unsubscribe_url
        self.calendar_url = calendar_url

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sub, name)

    @property
    def addressee(self) -> str:
        """Whom a mail greets: the organisation on a line of its own, then 「名前 様」, or
        「ご担当者様」 for a subscriber who gave no name (never a lone 「様」)."""
        name = f"{self._sub.name} 様" if self._sub.name else "ご担当者様"
        return "\n".join(x for x in (self._sub.organization, name) if x)


class Renderer:
    def __init__(self, cfg: MailConfig, unsubscribe_key: bytes, tz: tzinfo = JST,
                 links: LinkBuilder | None = None) -> None:
        self.cfg = cfg
        self.unsubscribe_key = unsubscribe_key  # of links mailed before [web] keys existed
        self.links = links
        loaders: list[jinja2.BaseLoader] = []
        if cfg.templates_dir:
            loaders.append(jinja2.FileSystemLoader(str(cfg.templates_dir)))
        loaders.append(jinja2.PackageLoader("jpixd", "templates"))
        self.env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=False,
                                      keep_trailing_newline=False, undefined=jinja2.StrictUndefined)
        self.tz = tz
        self.env.filters["jst"] = functools.partial(local_time, tz=tz)
        self.env.filters["jst_end"] = functools.partial(local_end, tz=tz)  # | jst_end(start)
        self.env.filters["span"] = functools.partial(short_span, tz=tz)  # | span(end)
        self.env.filters["duration"] = duration  # start | duration(end)
        self._subject = PerNotice(self.env, "subject.txt.j2")
        self._body = PerNotice(self.env, "body.txt.j2", tidy=_tidy)
        self.domain = cfg.from_addr.rpartition("@")[2] or "localhost"
        # The sender's display name as a UTF-8 mail and an ISO-2022-JP one carry it.
        name = header_text(cfg.from_name or "")
        self._from_names = {False: _in_jis_forms(name, False), True: _in_jis_forms(name, True)}

    def texts(self, notice: Notice, change: Change, sub: Subscriber,
              now: datetime | None = None, notice_id: int | None = None) -> tuple[str, str]:
        """(subject, body) as text, before any encoding; with `notice_id`, the body
        links to the notice's own page when the public pages are on."""
        page = self.links.notice(notice_id) if self.links is not None and notice_id else ""
        key = (notice, change, page)
        ctx = self._context(notice, change, self.links is not None, page, self.cfg.contact)
        view = self.recipient(sub, now)
        subject = header_text("".join(self._subject.render(key, ctx, view).split("\n")))
        return subject, _wrapped(self._body.render(key, ctx, view))

    def page_text(self, template: str, **context: Any) -> str:
        """A mail body from one of the templates (the self-service mails) as the notice
        bodies are made: control characters out, blank runs folded, lines wrapped."""
        return _finished(self.env.get_template(template).render(**context))

    def recipient(self, sub: Subscriber, now: datetime | None = None) -> Recipient:
        if self.links is None:
            return Recipient(sub)
        if sub.id is None:  # a preview or a test mail: nobody's links to sign
            return Recipient(sub, PER_SUBSCRIBER, PER_SUBSCRIBER, PER_SUBSCRIBER)
        at = now or datetime.now(self.tz)
        return Recipient(sub, self.links.manage(sub.id, at), self.links.unsubscribe(sub.id),
                         self.links.calendar(sub.id))

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def _context(notice: Notice, change: Change, links: bool, page: str,
                 contact: str | None) -> dict[str, Any]:
        return {
            "notice": notice, "change": str(change), "links": links, "notice_page": page,
            "contact": contact,
            "status_label": STATUS_LABELS.get(notice.status, str(notice.status)),
            "prefectures": "、".join(NAME_BY_CODE.get(c, c) for c in notice.prefectures),
            "carrier_label": CARRIER_LABELS.get(notice.carrier, notice.carrier),
        }

    def render(self, *, delivery_id: int, notice_id: int, notice: Notice, change: Change,
               sub: Subscriber, now: datetime) -> Rendered:
        subject, body = self.texts(notice, change, sub, now, notice_id)
        # The same delivery always has the same Message-ID: a resend after a crash can be
        # recognised as the same mail by the receiving side.
        return self.compose(sub, subject, body, now=now,
                            message_id=f"<jpixd.{delivery_id}.{notice_id}@{self.domain}>",
                            extra=[("X-Jpixd-Delivery", str(delivery_id)),
                                   *self._unsubscribe_headers(sub)])

    def compose(self, sub: Subscriber, subject: str, body: str, *, now: datetime,
                message_id: str, extra: list[tuple[str, str]]) -> Rendered:
        """A message to `sub`: encoded in its charset (ISO-2022-JP when everything fits),
        headers sanitised. Notices and the self-service mails alike."""
        wanted = sub.charset or self.cfg.charset
        iso2022 = wanted == "iso-2022-jp"
        subject, body = _in_jis_forms(subject, iso2022), _in_jis_forms(body, iso2022)
        display = _in_jis_forms(
            header_text(" ".join(x for x in (sub.organization, sub.name) if x)), iso2022)
        from_name = self._from_names[iso2022]
        charset, body_bytes = "utf-8", b""
        if iso2022 and _fits_jis_cached(subject) and \
                _fits_jis_cached(from_name) and fits_jis(display):
            try:  # the body's encoding is also its test: encoded once, not twice
                body_bytes = _body_bytes(body, "iso-2022-jp")
                charset = "iso-2022-jp"
            except UnicodeEncodeError:
                pass
        if charset == "utf-8":
            body_bytes = _body_bytes(body, "utf-8")
        headers = [
            ("MIME-Version", "1.0"),
            ("Content-Type", f'text/plain; charset="{charset}"'),
            ("Content-Transfer-Encoding", "7bit" if charset == "iso-2022-jp" else "base64"),
            ("Subject", _encoded("Subject", subject, charset)),
            ("From", _address("From", from_name, self.cfg.from_addr, charset)),
            ("To", _address("To", display, sub.email, charset)),
        ]
        if self.cfg.reply_to:
            headers.append(("Reply-To", self.cfg.reply_to))
        headers += [
            ("Date", _date_header(now.replace(microsecond=0), self.tz)),
            ("Message-ID", message_id),
            *extra,
            ("Auto-Submitted", "auto-generated"),
        ]
        head = "".join(f"{name}: {value}\r\n" for name, value in headers)
        data = head.encode("ascii") + b"\r\n" + body_bytes
        return Rendered(data=data, sender=self.cfg.from_addr, recipient=sub.email,
                        subject=subject, message_id=message_id, charset=charset)

    def _unsubscribe_headers(self, sub: Subscriber) -> list[tuple[str, str]]:
        if sub.id is None:
            return []
        if self.links is not None:  # a signed link, and RFC 8058's one-click POST if HTTPS
            url = self.links.unsubscribe(sub.id)
            return [("List-Unsubscribe", f"<{url}>"), *_one_click(url)]
        token = unsubscribe_token(self.unsubscribe_key, sub.id)
        base = self.cfg.list_unsubscribe
        if base and base.startswith("http"):
            sep = "&" if "?" in base else "?"
            url = f"{base}{sep}{urlencode({'token': token})}"
            return [("List-Unsubscribe", f"<{url}>"), *_one_click(url)]
        target = base[7:] if base and base.startswith("mailto:") else (
            self.cfg.reply_to or self.cfg.from_addr)
        return [("List-Unsubscribe", f"<mailto:{target}?subject=unsubscribe%20{token}>")]


def _tidy(text: str) -> str:
    """Control characters out, blank runs folded to one blank line."""
    return _BLANK_RUNS.sub("\n\n", body_text(text))


def _wrapped(tidied: str) -> str:
    return wrap(tidied.strip() + "\n")


def _finished(text: str) -> str:
    return _wrapped(_tidy(text))


@functools.lru_cache(maxsize=4096)
def _encoded(name: str, text: str, charset: str) -> str:
    """RFC 2047 B-encoded words, folded with CRLF SP; the same subject is encoded once
    for all recipients of a notice.

    Split on character boundaries, each word encoded on its own: an ISO-2022-JP word
    then ends back in ASCII, and no UTF-8 sequence is cut in two (RFC 2047 §5). Words stay
    within 75 characters; the first leaves room for the header name.
    """
    if text.isascii() and len(text) + len(name) < 76:
        return text
    codec = "iso2022_jp" if charset == "iso-2022-jp" else "utf-8"
    prefix, suffix = f"=?{charset}?b?", "?="
    whole = prefix + base64.b64encode(text.encode(codec)).decode() + suffix
    if len(whole) <= 75:  # one word (a display name, mostly): what the loop would make
        return whole
    words: list[str] = []
    chunk = ""
    for ch in text:
        trial = chunk + ch
        if len(prefix) + len(base64.b64encode(trial.encode(codec))) + len(suffix) > 75 and chunk:
            words.append(prefix + base64.b64encode(chunk.encode(codec)).decode() + suffix)
            chunk = ch
        else:
            chunk = trial
    if chunk:
        words.append(prefix + base64.b64encode(chunk.encode(codec)).decode() + suffix)
    return "\r\n ".join(words)


def _body_bytes(body: str, charset: str) -> bytes:
    crlf = body.replace("\n", "\r\n")
    if charset == "iso-2022-jp":
        return crlf.encode("iso2022_jp")  # 7-bit; the codec closes escapes at line ends
    lines = base64.encodebytes(crlf.encode("utf-8")).splitlines()  # 76 columns each
    return b"".join(line + b"\r\n" for line in lines)


def _address(name: str, display: str, addr: str, charset: str) -> str:
    """`display <addr>` with the display name RFC 2047-encoded (or quoted when ASCII)."""
    if not display:
        return addr
    if display.isascii():
        quoted = display.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{addr}>'
    return f"{_encoded(name, display, charset)} <{addr}>"


def short_span(start: datetime | None, end: datetime | None, tz: tzinfo = JST) -> str:
    """A work's time as a subject shows it, short enough for a phone's inbox line:
    「12/10(木) 02:00～06:00」, 「12/6(日) 23:00～翌05:00」, or a later day in full."""
    if start is None:
        return ""
    s = start.astimezone(tz)
    head = f"{s.month}/{s.day}({'月火水木金土日'[s.weekday()]}) {s:%H:%M}"
    if end is None:
        return head
    e = end.astimezone(tz)
    if e.date() == s.date():
        return f"{head}～{e:%H:%M}"
    if (e.date() - s.date()).days == 1:
        return f"{head}～翌{e:%H:%M}"
    return f"{head}～{e.month}/{e.day}({'月火水木金土日'[e.weekday()]}) {e:%H:%M}"


def local_end(end: datetime | None, start: datetime | None, tz: tzinfo = JST) -> str:
    """The end of a range after its start: only the time when it is the same day
    (「12月6日(日) 03:00 ～ 05:30」, not the date twice), else the whole date and time."""
    if end is None:
        return ""
    if start is not None and end.astimezone(tz).date() == start.astimezone(tz).date():
        return f"{end.astimezone(tz):%H:%M}"
    if start is not None and end.astimezone(tz).year == start.astimezone(tz).year:
        return local_time(end, tz).partition("年")[2]  # the year once, too
    return local_time(end, tz)


def duration(start: datetime | None, end: datetime | None) -> str:
    """How long from `start` to `end`, as a reader says it: 「50分」, 「2時間10分」,
    「3日と4時間」; empty when either is missing or the end is not after the start."""
    if start is None or end is None or end <= start:
        return ""
    minutes = int((end - start).total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}日" + (f"と{hours}時間" if hours else "")
    if hours:
        return f"{hours}時間" + (f"{mins}分" if mins else "")
    return f"{mins}分"


def stated_time(value: datetime | None, tz: tzinfo = JST) -> str:
    """A time NTT stated (its 掲載/更新日時): a stated date alone reads as midnight once
    parsed, and is shown as the date it was, not as 「00:00」."""
    if value is None:
        return ""
    text = local_time(value, tz)
    return text.removesuffix(" 00:00")


def local_time(value: datetime | None, tz: tzinfo = JST) -> str:
    """A time as a Japanese reader reads it, in the configured timezone (JST by default)."""
    if value is None:
        return ""
    local = value.astimezone(tz)
    weekday = "月火水木金土日"[local.weekday()]
    return f"{local.year}年{local.month}月{local.day}日({weekday}) {local:%H:%M}"
