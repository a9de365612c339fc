"""Subscriber validation and CSV, pure. The admin API and `jpixd subscribers import`
share one validator, so a row that the API refuses is refused by the import too, with
the same message (SPEC §4: JSON names = CSV columns, lists separated by ";")."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import idna

from jpixd.channels.manage import ChannelInvalid, cell, parse_cell
from jpixd.config import CHARSETS
from jpixd.feeds.charset import japanese_score
from jpixd.model import ALL_CARRIERS, ALL_KINDS, ALL_WINDOWS, Subscriber, SubscriberStatus
from jpixd.prefectures import code_of
from jpixd.records import Channel

FIELDS: tuple[str, ...] = (
    "email", "name", "organization", "carriers", "prefectures", "kinds", "services",
    "windows", "failure_respects_windows", "charset", "status", "legacy_id",
)
LIST_FIELDS = frozenset({"carriers", "prefectures", "kinds", "services", "windows"})
READ_ONLY = frozenset({"id", "created_at", "updated_at"})

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
# Line breaks of every kind (NEL too), other controls, and the invisible characters that
# can make a To: header show another name (bidi overrides, zero-width joiners).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e"
                      r"\u2066-\u2069\ufeff]")
MAX_SERVICES = 50


class Invalid(Exception):
    """Field errors: {"field": "what is wrong"}."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


def normalise_email(text: str) -> str:
    """Syntax-checked address, lower-cased, its domain IDNA-encoded."""
    value = unicodedata.normalize("NFC", text.strip())
    if len(value) > 254:
        raise ValueError("is longer than 254 characters")
    local, sep, domain = value.rpartition("@")
    if not sep or not local or not domain:
        raise ValueError(f"{text!r} is not an email address")
    if len(local) > 64 or not _LOCAL.fullmatch(local):
        raise ValueError(f"{text!r} has an invalid local part")
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii").lower()
    except idna.IDNAError as exc:
        raise ValueError(f"{text!r} has an invalid domain ({exc})") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or any(not lb or len(lb) > 63 for lb in labels):
        raise ValueError(f"{text!r} has an invalid domain")
    if labels[-1].isdigit():
        raise ValueError(f"{text!r} has an invalid domain (an IP address is not one)")
    # Lower-cased whole: the RFC lets a local part be case-sensitive, but no provider
    # we send to treats it so, and a bounce or an opt-out for NOC@ must reach noc@.
    address = f"{local.lower()}@{ascii_domain}"
    if len(address) > 254:  # measured as sent: after IDNA, 「…」 labels grow
        raise ValueError("is longer than 254 characters once its domain is encoded")
    return address


def _text(limit: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if _CONTROL.search(value):
            # Names end up in a To: header; a line break there is header injection.
            raise ValueError("must not contain line breaks or control characters")
        if len(value) > limit:
            raise ValueError(f"is longer than {limit} characters")
        return value.strip()
    return check


def _string_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError("must be a list of strings")
    return [x.strip() for x in value if x.strip()]


def _subset(allowed: tuple[str, ...], *, empty_ok: bool) -> Callable[[Any], tuple[str, ...]]:
    def check(value: Any) -> tuple[str, ...]:
        items = _string_list(value)
        bad = [x for x in items if x not in allowed]
        if bad:
            raise ValueError(f"{bad[0]!r} is not one of {', '.join(allowed)}")
        if not items and not empty_ok:
            raise ValueError(f"must name at least one of {', '.join(allowed)}")
        return tuple(a for a in allowed if a in items)
    return check


def _prefectures(value: Any) -> tuple[str, ...]:
    codes = set()
    for item in _string_list(value):
        code = code_of(item)
        if code is None:
            raise ValueError(f"{item!r} is not a prefecture (a code 01–47 or a name "
                             "such as 東京都)")
        codes.add(code)
    return tuple(sorted(codes))


def _services(value: Any) -> tuple[str, ...]:
    items = _string_list(value)
    if len(items) > MAX_SERVICES:
        raise ValueError(f"names more than {MAX_SERVICES} services")
    check = _text(100)
    return tuple(dict.fromkeys(check(x) for x in items))


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _charset(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in CHARSETS:
        raise ValueError(f"{value!r} is not one of {', '.join(CHARSETS)} (or null)")
    return value.lower()


def _status(value: Any) -> SubscriberStatus:
    try:
        return SubscriberStatus(value)
    except ValueError:
        raise ValueError(f"{value!r} is not one of "
                         f"{', '.join(s.value for s in SubscriberStatus)}") from None


def _email(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return normalise_email(value)


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "email": _email,
    "name": _text(200),
    "organization": _text(200),
    "carriers": _subset(ALL_CARRIERS, empty_ok=False),
    "prefectures": _prefectures,
    "kinds": _subset(ALL_KINDS, empty_ok=False),
    "services": _services,
    "windows": _subset(ALL_WINDOWS, empty_ok=False),
    "failure_respects_windows": _flag,
    "charset": _charset,
    "status": _status,
    "paused": _flag,  # JSON only: not a CSV column
    "legacy_id": _text(100),
}


def validate_changes(data: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """Checked, normalised field values; raises Invalid naming every bad field."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in READ_ONLY:
            errors[key] = "is read-only"
        elif key not in _CHECKS:
            errors[key] = "unknown field"
        else:
            try:
                out[key] = _CHECKS[key](value)
            except ValueError as exc:
                errors[key] = str(exc)
    if creating and "email" not in data:
        errors["email"] = "is required"
    if errors:
        raise Invalid(errors)
    return out


def to_json(sub: Subscriber) -> dict[str, Any]:
    return {
        "id": sub.id,
        "email": sub.email,
        "name": sub.name,
        "organization": sub.organization,
        "carriers": list(sub.carriers),
        "prefectures": list(sub.prefectures),
        "kinds": list(sub.kinds),
        "services": list(sub.services),
        "windows": list(sub.windows),
        "failure_respects_windows": sub.failure_respects_windows,
        "charset": sub.charset,
        "status": str(sub.status),
        "paused": sub.paused,
        "legacy_id": sub.legacy_id,
        "created_at": _iso(sub.created_at),
        "updated_at": _iso(sub.updated_at),
    }


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


# --------------------------------------------------------------------------- CSV


# Columns beyond the subscriber's own fields: their channels besides mail (issue 26).
CSV_EXTRA: tuple[str, ...] = ("channels",)


@dataclass(frozen=True)
class CsvRow:
    line: int
    subscriber: Subscriber  # as a new subscriber would be (defaults where no column)
    columns: frozenset[str] = frozenset(FIELDS)  # what the file says: all an update may change
    # With a `channels` column: (kind, url) each, the URL possibly as shown
    # (jpixd.channels.manage.parse_cell); None without the column (channels unchanged).
    channels: tuple[tuple[str, str], ...] | None = None


def decode_csv(data: bytes) -> str:
    """UTF-8 (with or without BOM), else Shift_JIS (cp932, as Excel writes it), else
    EUC-JP when it reads as Japanese and Shift_JIS does not (EUC-JP bytes often decode
    as Shift_JIS half-width katakana: 山田太郎 as ｻｳﾅﾄﾂﾀﾏｺ)."""
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Invalid({"file": f"starts with a UTF-8 byte order mark but is not UTF-8 "
                                   f"(byte {exc.start + 3})"}) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        euc = data.decode("euc_jp")
    except UnicodeDecodeError:
        euc = None
    try:
        text = data.decode("cp932")
    except UnicodeDecodeError as exc:
        if euc is not None:
            return euc
        raise Invalid({"file": f"is neither UTF-8, Shift_JIS nor EUC-JP "
                               f"(byte {exc.start})"}) from None
    if euc is not None and japanese_score(euc) > japanese_score(text):
        return euc
    # Python's cp932 turns the bytes 0x80, 0xA0 and 0xFD-0xFF, which Shift_JIS does not
    # have, into characters instead of failing: treat them as the decoding error they are.
    bad = _NOT_SJIS.search(text)
    if bad:
        at = len(text[:bad.start()].encode("cp932"))
        raise Invalid({"file": f"is neither UTF-8 nor Shift_JIS (byte {at})"})
    return text


_NOT_SJIS = re.compile("[\x80\uf8f0-\uf8f3]")
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def _cell(column: str, raw: str) -> Any:
    """A CSV cell as the JSON value the validator expects."""
    text = raw.strip()
    if text[:1] == "'" and text[1:2] in _FORMULA:
        text = text[1:]  # our own export's guard against spreadsheet formulas
    if column in LIST_FIELDS:
        return [x for x in (p.strip() for p in text.split(";")) if x]
    if column == "failure_respects_windows":
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        return text  # the validator says what is wrong with it
    return text


def parse_csv(data: bytes, *, allow_http: bool = False) -> tuple[list[CsvRow], list[str]]:
    """Every row checked; errors as "line N, column C: message". Rows only if no errors.
    `allow_http`: [channels] allow_http, for the channels column's URLs."""
    try:
        text = decode_csv(data)
    except Invalid as exc:
        return [], [f"file: {exc.fields['file']}"]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return _rows(reader, allow_http)
    except csv.Error as exc:  # a cell over 128 KiB, a NUL byte, …
        return [], [f"line {reader.line_num}: {exc}"]


def _rows(reader: Any, allow_http: bool) -> tuple[list[CsvRow], list[str]]:
    errors: list[str] = []
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return [], ["line 1: the file is empty (a header line with at least 'email' is needed)"]
    known = (*FIELDS, *CSV_EXTRA)
    errors.extend(f"line 1, column {h!r}: unknown column (known: {', '.join(known)})"
                  for h in header if h not in known)
    errors.extend(f"line 1, column {h!r}: appears twice" for h in sorted(set(header))
                  if header.count(h) > 1)
    if "email" not in header:
        errors.append("line 1: no 'email' column")
    if errors:
        return [], errors
    rows: list[CsvRow] = []
    seen: dict[str, int] = {}
    line = reader.line_num + 1
    for record in reader:
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(header):
            errors.append(f"line {start}: {len(record)} columns, the header has {len(header)}")
            continue
        # An empty cell means "the default", as an absent JSON field does.
        values = {col: _cell(col, cell) for col, cell in zip(header, record, strict=True)
                  if cell.strip() and col in FIELDS}
        channels = None
        if "channels" in header:
            try:
                channels = tuple(parse_cell(record[header.index("channels")],
                                            allow_http=allow_http))
            except ChannelInvalid as exc:
                errors.append(f"line {start}, column channels: {exc.fields['channels']}")
                continue
        try:
            changes = validate_changes(values, creating=True)
        except Invalid as exc:
            errors.extend(f"line {start}, column {col}: {msg}" for col, msg in exc.fields.items())
            continue
        email = changes["email"]
        if email in seen:
            errors.append(f"line {start}, column email: {email} repeats line {seen[email]}")
            continue
        seen[email] = start
        rows.append(CsvRow(start, Subscriber(**changes), frozenset(header) & frozenset(FIELDS),
                           channels))
    return (rows if not errors else []), errors


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _safe(cell: str) -> str:
    """A cell a spreadsheet will not run: =HYPERLINK(…), @SUM(…), +cmd|… get a leading
    quote (OWASP's advice); the import takes it off again."""
    return "'" + cell if cell[:1] in _FORMULA else cell


def to_csv(subscribers: Sequence[Subscriber],
           channels: Mapping[int, list[Channel]] | None = None) -> str:
    """With `channels` (by subscriber id), a `channels` column too, each URL as shown."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((*FIELDS, *CSV_EXTRA) if channels is not None else FIELDS)
    for s in subscribers:
        extra = [] if channels is None else [_safe(cell(channels.get(s.id or 0, [])))]
        writer.writerow([
            s.email, _safe(s.name), _safe(s.organization), ";".join(s.carriers),
            ";".join(s.prefectures),
            ";".join(s.kinds), _safe(";".join(s.services)), ";".join(s.windows),
            "true" if s.failure_respects_windows else "false", s.charset or "", str(s.status),
            _safe(s.legacy_id), *extra,
        ])
    return out.getvalue()


def unsent_mail_after(old: Subscriber, new: Subscriber) -> tuple[str, str | None] | None:
    """What a change to a subscriber does to their mail not yet sent: ("skip", why) when
    they no longer receive mail (left, suppressed, paused), ("readdress", None) when
    their address changed (the mail goes to the new one), None when it stands."""
    if new.status != SubscriberStatus.ACTIVE:
        return "skip", f"subscriber {new.status}"
    if new.paused:
        return "skip", "subscriber paused"
    if new.email != old.email:
        return "readdress", None
    return None

