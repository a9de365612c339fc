"""A feed server on 127.0.0.1 for the poller's tests: serves what the test puts in
`pages`, honours If-None-Match / If-Modified-Since, redirects, fails or hangs on demand,
and records every request."""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from tests.loopback import serve_app

LAST_MODIFIED = "Sat, 28 Nov 2026 05:30:00 GMT"


@dataclass
class Page:
    body: bytes
    content_type: str = "application/rss+xml"
    charset: str | None = None
    status: int = 200
    location: str | None = None  # with 301/302/307/308
    hang: asyncio.Event | None = None  # wait for this before answering (timeouts)


@dataclass
class FeedServer:
    base: str = ""
    pages: dict[str, Page] = field(default_factory=dict)
    hits: dict[str, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))
    waiting: list[asyncio.Event] = field(default_factory=list)
    # Called once a 200 body has been written out in full (fault injection).
    after_body: Callable[[str], None] | None = None

    def url(self, path: str) -> str:
        return self.base + path

    def count(self, path: str) -> int:
        return len(self.hits[path])

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs
        self.hits[request.path].append(dict(request.headers))
        page = self.pages.get(path) or self.pages.get(request.path)
        if page is None:
            raise web.HTTPNotFound()
        if page.hang is not None:
            self.waiting.append(page.hang)
            await page.hang.wait()
        if page.location:
            return web.Response(status=page.status, headers={"Location": page.location})
        if page.status != 200:
            return web.Response(status=page.status, text="server error")
        etag = '"' + hashlib.sha1(page.body).hexdigest() + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        ctype = page.content_type + (f"; charset={page.charset}" if page.charset else "")
        resp = web.StreamResponse(headers={"ETag": etag, "Content-Type": ctype,
                                           "Last-Modified": LAST_MODIFIED})
        await resp.prepare(request)
        await resp.write(page.body)
        await resp.write_eof()
        if self.after_body is not None:
            self.after_body(request.path)
        return resp


@asynccontextmanager
async def feed_server() -> AsyncIterator[FeedServer]:
    server = FeedServer()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", server.handle)

    def release() -> None:
        for event in server.waiting:
            event.set()  # let hung handlers finish so the server can stop at once

    async with serve_app(app, release) as server.base:
        yield server
