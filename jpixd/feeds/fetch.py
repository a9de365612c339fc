"""Fetching a source: conditional GET, redirects (permanent ones reported so the poller
can remember them), a timeout, a maximum body size, and file:// URLs for local sources."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp

from jpixd import __version__
from jpixd.feeds.errors import FeedError
from jpixd.feeds.policy import redirect_refusal

USER_AGENT = f"jpixd/{__version__} (construction and outage notice mailer)"
_PERMANENT = (301, 308)
_MAX_REDIRECTS = 5


@dataclass(frozen=True)
class Fetched:
    not_modified: bool
    body: bytes = b""
    charset: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    final_url: str = ""
    permanent_url: str | None = None  # every hop was 301/308: poll here from now on


class Fetcher:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def fetch(self, url: str, *, limit_seconds: float, max_bytes: int,
                    etag: str | None = None, last_modified: str | None = None,
                    source_url: str | None = None,
                    redirect_hosts: tuple[str, ...] = ()) -> Fetched:
        """`source_url` is the configured URL of the source this fetch is for: redirects
        are checked against it (see `jpixd.feeds.policy`)."""
        if urlsplit(url).scheme == "file":
            return await asyncio.to_thread(_read_file, url, max_bytes, etag)
        try:
            async with asyncio.timeout(limit_seconds):
                return await self._http(url, max_bytes, etag, last_modified,
                                        source_url or url, redirect_hosts)
        except TimeoutError:
            raise FeedError(f"no complete answer from {url} within {limit_seconds:g}s") from None
        except aiohttp.ClientError as exc:
            raise FeedError(f"{url}: {type(exc).__name__}: {exc}") from None

    async def _http(self, url: str, max_bytes: int, etag: str | None,
                    last_modified: str | None, source_url: str,
                    redirect_hosts: tuple[str, ...]) -> Fetched:
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        current, all_permanent = url, True
        for _ in range(_MAX_REDIRECTS + 1):
            async with self.session.get(current, headers=headers, allow_redirects=False) as r:
                if r.status in (301, 302, 303, 307, 308):
                    location = r.headers.get("Location")
                    if not location:
                        raise FeedError(f"{current}: HTTP {r.status} without a Location")
                    all_permanent = all_permanent and r.status in _PERMANENT
                    target = urljoin(current, location)
                    why = redirect_refusal(source_url, current, target, redirect_hosts)
                    if why is not None:
                        raise FeedError(f"{current}: HTTP {r.status} to {target}: {why}")
                    current = target
                    continue
                permanent = current if all_permanent and current != url else None
                if r.status == 304:
                    return Fetched(not_modified=True, final_url=current, permanent_url=permanent,
                                   etag=etag, last_modified=last_modified)
                if r.status != 200:
                    raise FeedError(f"{current}: HTTP {r.status} {r.reason or ''}".strip())
                body = await _read_limited(r, max_bytes, current)
                return Fetched(
                    not_modified=False, body=body, charset=r.charset,
                    etag=r.headers.get("ETag"), last_modified=r.headers.get("Last-Modified"),
                    final_url=current, permanent_url=permanent)
        raise FeedError(f"{url}: more than {_MAX_REDIRECTS} redirects")


async def _read_limited(r: aiohttp.ClientResponse, max_bytes: int, url: str) -> bytes:
    length = r.content_length
    if length is not None and length > max_bytes:
        raise FeedError(f"{url}: body of {length} bytes is over the limit of {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in r.content.iter_chunked(65536):
        size += len(chunk)
        if size > max_bytes:
            raise FeedError(f"{url}: body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _read_file(url: str, max_bytes: int, etag: str | None) -> Fetched:
    """A local file; its validator is a hash of its content (mtime and size miss a
    rewrite of the same size within one tick of the file system's clock)."""
    path = Path(unquote(urlsplit(url).path))
    try:
        stat = path.stat()
        if not S_ISREG(stat.st_mode):  # /dev/zero, a FIFO, a directory: never read
            raise FeedError(f"{path}: not a regular file")
        if stat.st_size > max_bytes:
            raise FeedError(f"{path}: {stat.st_size} bytes is over the limit of {max_bytes}")
        with path.open("rb") as f:
            body = f.read(max_bytes + 1)  # a file that grew since stat() is still bounded
        if len(body) > max_bytes:
            raise FeedError(f"{path}: over the limit of {max_bytes} bytes")
    except OSError as exc:
        raise FeedError(f"{path}: {exc.strerror or exc}") from None
    validator = "sha256:" + hashlib.sha256(body).hexdigest()
    if etag == validator:
        return Fetched(not_modified=True, final_url=url, etag=validator)
    return Fetched(not_modified=False, body=body, final_url=url, etag=validator)
