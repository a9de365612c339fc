"""Forwarding to moto from a fault-injecting proxy on loopback (shared by the tests that
put a proxy in front of an AWS endpoint)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Protocol

import aiohttp
from aiohttp import web

from tests.loopback import serve_app

_HOP_BY_HOP = ("content-length", "transfer-encoding", "content-encoding")


async def forward(session: aiohttp.ClientSession, target: str, request: web.Request,
                  body: bytes) -> web.Response:
    """Send the request on to `target` unchanged and hand back its answer."""
    headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
    async with session.request(request.method, target + request.path_qs, data=body,
                               headers=headers) as up:
        return web.Response(body=await up.read(), status=up.status, headers={
            k: v for k, v in up.headers.items() if k.lower() not in _HOP_BY_HOP})


@asynccontextmanager
async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                ) -> AsyncIterator[str]:
    """An aiohttp server on 127.0.0.1:0 answering every path with `handler`; its URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with serve_app(app) as url:
        yield url


class Forwarding(Protocol):
    """A fault-injecting proxy: answers some calls itself, forwards the rest."""

    session: aiohttp.ClientSession | None

    async def handle(self, request: web.Request) -> web.StreamResponse: ...


@asynccontextmanager
async def proxying(proxy: Forwarding) -> AsyncIterator[str]:
    """Serve `proxy` on loopback with a client session to forward with; its URL."""
    async with serve(proxy.handle) as url, aiohttp.ClientSession() as session:
        proxy.session = session
        yield url
