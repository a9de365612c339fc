"""What every HTML page needs against a hostile browser or client: security headers,
the client's real address (behind the ALB), CSRF tokens, and rate limits.

CSRF tokens are a keyed digest of a random cookie (double submit, signed): a form from
another site can make the browser send the cookie but cannot read it to compute the
token. Rate limits are in memory, per process: enough against a script hammering one
host; the ALB's own limits are the outer ring.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from jpixd.web.links import Signer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# No inline script or style anywhere: what the pages need is served from /static/.
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
CSRF_COOKIE = "jpixd_csrf"
CSRF_FIELD = "csrf"


def security_headers(response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Tokens travel in URLs: never in a Referer to anyone.
    response.headers["Referrer-Policy"] = "no-referrer"
    if response.content_type == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        security_headers(exc)
        raise
    security_headers(response)
    return response


def nul_parameter(request: web.Request) -> str | None:
    """The name of a query or path parameter holding a NUL, if any: no address, name or
    filter has one, SQLite's LIKE matched everything with it and PostgreSQL refused it
    (security probe N9). The caller answers 400."""
    for name, value in [*request.query.items(), *request.match_info.items()]:
        if "\x00" in value:
            return name
    return None


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """The posted form; a body that is not what its Content-Type says (bytes that are not
    UTF-8, a broken multipart) is the client's mistake, a 400, never a 500."""
    try:
        return await request.post()
    except (UnicodeDecodeError, ValueError, AssertionError) as exc:
        raise web.HTTPBadRequest(text=f"the form could not be read: {exc}"[:200]) from None


class Proxies:
    """Which peers' X-Forwarded-For / -Proto are believed (`[web] trusted_proxies`)."""

    def __init__(self, networks: Sequence[str], *, ipv6_prefix: int = 64,
                 https_site: bool = False) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self.ipv6_prefix = ipv6_prefix
        # The site's own links are https (`[web] base_url`): its cookies are Secure even
        # when the proxy in front was not named in trusted_proxies.
        self.https_site = https_site

    def trusted(self, addr: str | None) -> bool:
        if not addr or not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in n for n in self.networks)

    def client(self, request: web.Request) -> str:
        """The client's address: the peer, or, from a trusted proxy, the right-most
        address in X-Forwarded-For that is not itself a trusted proxy (what the client
        wrote on the left is not believed)."""
        peer = request.remote or "unknown"
        if not self.trusted(peer):
            return peer
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        for hop in reversed([h for h in hops if h]):
            if not self.trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer
        return peer

    def limit_key(self, request: web.Request) -> str:
        """Whom a per-client limit counts: an IPv4 address, or the IPv6 network of
        `ipv6_prefix` bits around the address (a customer gets a whole /64, or a /56:
        counting each address would let one host take 2^64 shares)."""
        return client_key(self.client(request), self.ipv6_prefix)

    def secure(self, request: web.Request) -> bool:
        """Whether the browser's side of the connection is HTTPS."""
        if request.secure or self.https_site:
            return True
        if self.trusted(request.remote):
            return request.headers.get("X-Forwarded-Proto", "").lower() == "https"
        return False


def client_key(address: str, ipv6_prefix: int) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # "unknown": one shared key
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is the IPv4 client
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{ipv6_prefix}", strict=False))
    return str(ip)


class Csrf:
    def __init__(self, signer: Signer, proxies: Proxies, *, path: str = "/",
                 purpose: str = "csrf") -> None:
        self.signer, self.proxies, self.path, self.purpose = signer, proxies, path, purpose

    def token(self, request: web.Request, response_cookies: dict[str, str]) -> str:
        """The form token for this browser; a new cookie is put in `response_cookies`
        when the browser has none."""
        nonce = request.cookies.get(CSRF_COOKIE, "")
        if len(nonce) != 32 or not nonce.isalnum():
            nonce = response_cookies.setdefault(CSRF_COOKIE, secrets.token_hex(16))
        return self.signer.digest(f"{self.purpose}|{nonce}")

    def valid(self, request: web.Request, given: str | None) -> bool:
        nonce = request.cookies.get(CSRF_COOKIE, "")
        if not given or len(nonce) != 32 or len(given) > 64:
            return False
        return self.signer.check_digest(f"{self.purpose}|{nonce}", given)

    def set_cookies(self, request: web.Request, response: web.StreamResponse,
                    cookies: dict[str, str]) -> None:
        for name, value in cookies.items():
            response.set_cookie(name, value, path=self.path, httponly=True,
                                samesite="Strict", secure=self.proxies.secure(request))


class RateLimit:
    """At most `limit` events per key within `window` seconds (a sliding log)."""

    def __init__(self, limit: int, window: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self.limit, self.window, self.clock, self.max_keys = limit, window, clock, max_keys
        self._events: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        now = self.clock()
        log = self._events.get(key)
        if log is None:
            if len(self._events) >= self.max_keys:
                self._prune(now)
            log = self._events[key] = deque()
        while log and log[0] <= now - self.window:
            log.popleft()
        if len(log) >= self.limit:
            return False
        log.append(now)
        return True

    def _prune(self, now: float) -> None:
        for key in [k for k, v in self._events.items() if not v or v[-1] <= now - self.window]:
            del self._events[key]
        if len(self._events) >= self.max_keys:  # a flood of distinct keys: start over
            self._events.clear()
