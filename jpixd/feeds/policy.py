"""Which URLs a source may make jpixd fetch. Pure.

A feed is untrusted input (NTT West's is plain http, so anyone on the path can write
it): its detail links and its redirects must not turn jpixd into a reader of local files
or of the instance metadata service. Detail links are followed only on the source's own
scheme and host (or the hosts in its `detail_hosts`); a `file://` source may link only
to files in its own directory; an http(s) source never to `file://`. Redirects stay on
the same host (or `redirect_hosts`), never go https → http, and never reach a loopback,
link-local or private address unless the source itself is on one.
"""

from __future__ import annotations

import ipaddress
import posixpath
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _internal(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_reserved \
        or ip.is_unspecified or ip.is_multicast


def detail_refusal(source_url: str, link: str, allowed: Iterable[str] = ()) -> str | None:
    """Why `link` may not be fetched for a source at `source_url`, or None."""
    src, dst = urlsplit(source_url), urlsplit(link)
    if dst.scheme == "file" or src.scheme == "file":
        if src.scheme != "file" or dst.scheme != "file":
            return f"{dst.scheme}: links are not followed from a {src.scheme}: source"
        if dst.netloc not in ("", "localhost") or src.netloc not in ("", "localhost"):
            return "file: links must be local"
        home = posixpath.dirname(posixpath.normpath(unquote(src.path)))
        target = posixpath.normpath(unquote(dst.path))
        if posixpath.dirname(target) != home and not target.startswith(home + "/"):
            return f"{target} is outside the source's directory {home}"
        return None
    if dst.scheme not in ("http", "https"):
        return f"{dst.scheme or 'a relative'}: link is not http(s)"
    if src.scheme == "https" and dst.scheme == "http":
        return "the source is https, the link is plain http"
    host = _host(link)
    if host != _host(source_url) and host not in {h.lower() for h in allowed}:
        return f"{host} is not the source's host (add it to detail_hosts to allow it)"
    return None


def redirect_refusal(source_url: str, current: str, target: str,
                     allowed: Iterable[str] = ()) -> str | None:
    """Why a redirect from `current` to `target` may not be followed, or None."""
    cur, dst = urlsplit(current), urlsplit(target)
    if dst.scheme not in ("http", "https"):
        return f"a redirect to {dst.scheme}: is not followed"
    if cur.scheme == "https" and dst.scheme == "http":
        return "a redirect from https to plain http is not followed"
    host = _host(target)
    if _internal(host) and not _internal(_host(source_url)):
        return f"a redirect to an internal address ({host}) is not followed"
    if host != _host(current) and host not in {h.lower() for h in allowed}:
        return f"a redirect to another host ({host}) is not followed " \
               "(add it to redirect_hosts to allow it)"
    return None
