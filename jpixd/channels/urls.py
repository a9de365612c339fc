"""Where a channel may send: safe to point anywhere a stranger can type (issue 26).

A URL is https (http only where the operator allows it), names a host, carries no
user or password, and is at most 2,000 characters. Its host is resolved when each
message is sent, and every address it resolves to must be a public one — not loopback,
link-local (the cloud's metadata service at 169.254.169.254 is one), private, shared,
reserved or multicast, in IPv4 or IPv6, nor an IPv4 one wrapped in IPv6 — unless it lies
in a network the operator lists. The connection then goes to those checked addresses
(`CheckedResolver` is the resolver the client uses), so a name that answers differently
the second time (DNS rebinding) cannot lead it elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

MAX_URL = 2000

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(ValueError):
    """A channel URL that may not be used, and why: in words an operator can act on, and
    as a `code` the pages say in Japanese (length, control, unreadable, scheme, host,
    userinfo, port)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class RefusedAddress(OSError):
    """The host resolved to an address channels may not use (not worth retrying)."""


def check_url(url: str, *, allow_http: bool = False) -> str:
    """The URL, if its form is allowed; else UnsafeUrl. Its addresses are checked when
    it is used (`CheckedResolver`)."""
    if len(url) > MAX_URL:
        raise UnsafeUrl(f"longer than {MAX_URL} characters", "length")
    if any(ord(c) < 0x21 or c == "\x7f" for c in url):
        raise UnsafeUrl("contains spaces or control characters", "control")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"cannot be read ({exc})", "unreadable") from None
    if parts.scheme != "https" and not (allow_http and parts.scheme == "http"):
        raise UnsafeUrl("must be https" + (" or http" if allow_http else ""),
                        "scheme_http" if allow_http else "scheme")
    if not parts.hostname:
        raise UnsafeUrl("names no host", "host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("must not carry a user or password", "userinfo")
    if port == 0:
        raise UnsafeUrl("port 0 is not a port", "port")
    return url


def shown(url: str) -> str:
    """A channel's URL as a person is shown it: scheme, host and the last four characters
    (enough to tell two apart; a Slack or Teams webhook URL is its own secret)."""
    parts = urlsplit(url)
    tail = url[-4:] if len(url) > 24 else ""
    return f"{parts.scheme}://{parts.hostname or '?'}/…{tail}"


def networks(texts: Sequence[str]) -> tuple[Network, ...]:
    """The operator's allowed networks ("10.0.0.0/8", "fd00::/8", "127.0.0.1")."""
    return tuple(ipaddress.ip_network(t, strict=False) for t in texts)


def is_address(host: str) -> bool:
    """Whether a URL's host is an IP address rather than a name."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def address_allowed(address: str, allowed: Sequence[Network] = ()) -> bool:
    """A public unicast address, or one in a network the operator allowed."""
    try:
        ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(ip in net for net in allowed):
        return True
    return ip.is_global and not ip.is_multicast


class CheckedResolver(AbstractResolver):
    """Resolves as the system does, then refuses the host if any address it gave is not
    allowed: the client connects only to addresses this returned."""

    def __init__(self, allowed: Sequence[Network] = (), inner: AbstractResolver | None = None
                 ) -> None:
        self.allowed = tuple(allowed)
        self.inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        refused = [r["host"] for r in results if not address_allowed(r["host"], self.allowed)]
        if refused or not results:
            raise RefusedAddress(f"{host} resolves to an address channels may not use: "
                          f"{', '.join(refused) or 'none'}")
        return results

    async def close(self) -> None:
        await self.inner.close()

