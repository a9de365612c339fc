"""One attempt to deliver a channel message: POST, and what came of it.

No redirect is followed (a 3xx is a failure: the receiver must give its real URL), the
whole attempt has 5 s, at most 64 KiB of the answer is read, and the host's addresses are
checked as it is connected to (jpixd.channels.urls). What came of it decides what the
outbox does next: sent; retry (a timeout, a connection failure, 408, 425, 429 or 5xx,
after `Retry-After` when the receiver gives one); gone (404, 410: the webhook was removed,
counted towards pausing the channel); failed (any other answer, a refused address).
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp

from jpixd.channels.urls import (
    CheckedResolver,
    Network,
    RefusedAddress,
    address_allowed,
    is_address,
)

TIMEOUT_S = 5.0
MAX_RESPONSE = 64 * 1024
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
GONE_STATUSES = frozenset({404, 410})


@dataclass(frozen=True)
class Outcome:
    result: str  # "sent" | "retry" | "gone" | "failed"
    status: int | None = None
    retry_after: float | None = None  # seconds the receiver asked us to wait
    error: str | None = None


def session(allowed: tuple[Network, ...] = ()) -> aiohttp.ClientSession:
    """The client channels post with: addresses checked, no proxy from the environment,
    no cookies kept between receivers."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=CheckedResolver(allowed), limit=32),
        cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from `Retry-After` (a number, or an HTTP date), or None."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(min(int(text), 86400))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, min((when - now).total_seconds(), 86400.0))


async def post(client: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
               *, allowed: tuple[Network, ...] = (), now: datetime,
               limit_s: float = TIMEOUT_S) -> Outcome:
    host = urlsplit(url).hostname or ""
    if is_address(host) and not address_allowed(host, allowed):
        # An address written in the URL never reaches the resolver: checked here.
        return Outcome("failed", error=f"{host} is an address channels may not use")
    try:
        async with client.post(url, data=body, headers=headers, allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=limit_s)) as resp:
            await resp.content.read(MAX_RESPONSE)
            status = resp.status
            wait = retry_after(resp.headers.get("Retry-After"), now)
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, RefusedAddress):
            return Outcome("failed", error=str(exc.os_error))
        return Outcome("retry", error=f"cannot connect: {exc.os_error}")
    except TimeoutError:
        return Outcome("retry", error=f"no answer within {limit_s:.0f} s")
    except aiohttp.ClientError as exc:
        return Outcome("retry", error=f"{type(exc).__name__}: {exc}"[:300])
    if 200 <= status < 300:
        return Outcome("sent", status)
    if status in RETRY_STATUSES:
        return Outcome("retry", status, wait, f"HTTP {status}")
    if status in GONE_STATUSES:
        return Outcome("gone", status, None, f"HTTP {status}: the webhook is not there")
    if 300 <= status < 400:
        return Outcome("failed", status, None, f"HTTP {status}: redirects are not followed")
    return Outcome("failed", status, None, f"HTTP {status}")

