"""A listener that sheds load (security probe M6): a connection must send a complete
request head within `header_timeout` (slowloris), at most `max_connections` are open
at once (the rest are closed on accept instead of exhausting file descriptors), and a
request body must arrive within `body_timeout`. aiohttp has none of these built in.

The timer starts when a connection opens and again after each response (keep-alive);
the middleware stops it when aiohttp hands a parsed request to the application, which
is exactly "the head arrived".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from jpixd.metrics import Metrics


@dataclass
class Limits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 256


@dataclass
class Shedder:
    limits: Limits
    metrics: Metrics | None = None
    listener: str = "admin"
    counted: dict[int, int] = field(default_factory=dict)  # handler id → transport id
    timers: dict[int, asyncio.TimerHandle] = field(default_factory=dict)

    @property
    def active(self) -> int:
        return len(self.counted)

    def watch(self, server: web.Server) -> None:
        """Hook aiohttp's connection manager: every handler reports its open and close
        to the server it belongs to (`RequestHandler` has slots; the server has not)."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            made(handler, transport)
            self._opened(handler, transport)

        def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            self._closed(handler)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    def _opened(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        if self.active >= self.limits.max_connections:
            self._shed("connection_limit")
            transport.abort()
            return
        self.counted[id(handler)] = id(transport)
        self.arm(transport)

    def _closed(self, handler: RequestHandler) -> None:
        tid = self.counted.pop(id(handler), None)
        if tid is not None and (handle := self.timers.pop(tid, None)):
            handle.cancel()

    def arm(self, transport: asyncio.BaseTransport | None) -> None:
        """(Re)start the wait for a request head on this connection."""
        if transport is None or transport.is_closing() or \
                id(transport) not in self.counted.values():
            return
        self.disarm(transport)
        loop = asyncio.get_running_loop()
        self.timers[id(transport)] = loop.call_later(self.limits.header_timeout,
                                                     self._expire, transport)

    def disarm(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is not None and (handle := self.timers.pop(id(transport), None)):
            handle.cancel()

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        self._shed("header_timeout")
        transport.close()

    def _shed(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.http_shed.labels(self.listener, reason).inc()

    @web.middleware
    async def heads(self, request: web.Request,
                    handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        """Outermost: the head has arrived; the wait restarts once the answer is out."""
        self.disarm(request.transport)
        try:
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            self.arm(request.transport)

    @web.middleware
    async def bodies(self, request: web.Request,
                     handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        """Innermost: the body is read within `body_timeout` (the handler then gets it
        from aiohttp's cache), so a client cannot hold a handler by dripping a body."""
        if request.body_exists:
            try:
                async with asyncio.timeout(self.limits.body_timeout):
                    await request.read()
            except TimeoutError:
                self._shed("body_timeout")
                raise web.HTTPRequestTimeout(reason="request body too slow") from None
        response: web.StreamResponse = await handler(request)
        return response


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections are watched by a Shedder."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, shedder: Shedder,
                 backlog: int = 128) -> None:
        super().__init__(runner, host, port, backlog=backlog)
        self.shedder = shedder

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self.shedder.watch(server)
        self._server = await asyncio.get_running_loop().create_server(
            server, self._host, self._port, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port)
