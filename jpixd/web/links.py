"""Signed links for subscribers: pure, no I/O.

A token binds a subscriber id, a purpose and an expiry under an HMAC-SHA256 of the
`[web] secret_keys`: `<p><id>.<expiry>.<mac>`, where `p` is one letter per purpose and
`expiry` is Unix seconds, or 0 for "while the subscriber exists" (unsubscribe and
calendar links: a mail kept for years must still let its reader leave). The first key
signs and every key verifies, so a key added in front breaks no link already mailed;
a key removed retires the links it signed. Nothing else is kept: whether the subscriber
still exists is the caller's check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlencode


class Purpose(StrEnum):
    CONFIRM = "confirm"
    MANAGE = "manage"
    UNSUBSCRIBE = "unsubscribe"
    CALENDAR = "calendar"


_LETTER = {Purpose.CONFIRM: "c", Purpose.MANAGE: "m", Purpose.UNSUBSCRIBE: "u",
           Purpose.CALENDAR: "k"}
# Links that may never expire: the others must carry a time.
NEVER_EXPIRE = frozenset({Purpose.UNSUBSCRIBE, Purpose.CALENDAR})
# ASCII only (「１」 is a digit to str.isdigit), bounded: strangers write these.
_TOKEN = re.compile(r"([cmuk])([1-9][0-9]{0,17})\.(0|[1-9][0-9]{0,11})\.([A-Za-z0-9_-]{22})")


@dataclass(frozen=True)
class Link:
    subscriber_id: int
    purpose: Purpose
    expires_at: int  # Unix seconds; 0: never


class Signer:
    """Signs with the first key, verifies with any."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("no signing keys")
        self._keys = [k.encode() for k in keys]

    def _mac(self, key: bytes, purpose: Purpose, sid: int, expires: int) -> str:
        msg = f"jpixd-link-v1|{purpose}|{sid}|{expires}".encode()
        digest = hmac.new(key, msg, hashlib.sha256).digest()[:16]  # 128 bits
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, subscriber_id: int, purpose: Purpose, expires_at: datetime | None) -> str:
        if expires_at is None and purpose not in NEVER_EXPIRE:
            raise ValueError(f"a {purpose} link must expire")
        expires = 0 if expires_at is None else int(expires_at.timestamp())
        mac = self._mac(self._keys[0], purpose, subscriber_id, expires)
        return f"{_LETTER[purpose]}{subscriber_id}.{expires}.{mac}"

    def verify(self, token: str, purpose: Purpose, now: datetime) -> Link | None:
        """The link if `token` is one of ours, for `purpose`, and not expired; else None
        (which of these failed is not said: it would help a guesser)."""
        m = _TOKEN.fullmatch(token)
        if m is None or m.group(1) != _LETTER[purpose]:
            return None
        sid, expires, given = int(m.group(2)), int(m.group(3)), m.group(4).encode()
        if expires == 0 and purpose not in NEVER_EXPIRE:
            return None
        if expires and expires < now.timestamp():
            return None
        ok = False
        for key in self._keys:  # every key, always: the time does not tell which matched
            ok |= hmac.compare_digest(self._mac(key, purpose, sid, expires).encode(), given)
        return Link(sid, purpose, expires) if ok else None

    def digest(self, text: str) -> str:
        """A keyed digest of `text` (CSRF tokens, session values), with the signing key."""
        mac = hmac.new(self._keys[0], b"jpixd-digest-v1|" + text.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:24]).rstrip(b"=").decode()

    def check_digest(self, text: str, given: str) -> bool:
        ok = False
        for key in self._keys:
            mac = hmac.new(key, b"jpixd-digest-v1|" + text.encode(), hashlib.sha256)
            want = base64.urlsafe_b64encode(mac.digest()[:24]).rstrip(b"=")
            ok |= hmac.compare_digest(want, given.encode("utf-8", "surrogateescape"))
        return ok


def webcal(url: str) -> str:
    """The same calendar as a `webcal://` link: a click subscribes in the calendar app
    (which then fetches it over https) instead of downloading a file once."""
    scheme, sep, rest = url.partition("://")
    return f"webcal://{rest}" if sep and scheme in ("http", "https") else url


class LinkBuilder:
    """The URLs mails and pages carry, on `[web] base_url`."""

    def __init__(self, base_url: str, signer: Signer, *, confirm_ttl: timedelta,
                 manage_ttl: timedelta) -> None:
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.confirm_ttl = confirm_ttl
        self.manage_ttl = manage_ttl

    def _url(self, path: str, token: str) -> str:
        return f"{self.base_url}{path}?{urlencode({'t': token})}"

    def confirm(self, sid: int, now: datetime) -> str:
        return self._url("/s/confirm", self.signer.sign(sid, Purpose.CONFIRM,
                                                        now + self.confirm_ttl))

    def manage(self, sid: int, now: datetime) -> str:
        return self._url("/s/manage", self.signer.sign(sid, Purpose.MANAGE,
                                                       now + self.manage_ttl))

    def unsubscribe(self, sid: int) -> str:
        return self._url("/unsubscribe", self.signer.sign(sid, Purpose.UNSUBSCRIBE, None))

    def notice(self, notice_id: int) -> str:
        """A notice's own page on the board (its reports, what changed)."""
        return f"{self.base_url}/notices/{notice_id}"

    def calendar(self, sid: int) -> str:
        return self._url("/s/calendar.ics", self.signer.sign(sid, Purpose.CALENDAR, None))
