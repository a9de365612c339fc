"""A listener that sheds load (security probe M6, N6): a connection must send a complete
request head within `header_timeout` (slowloris), at most `max_connections` are open
at once, and a request body must arrive within `body_timeout`. aiohttp has none of these
built in.

Fair to every visitor (N6): one client address (an IPv4 address, an IPv6 /64) holds at
most `per_client` connections and has at most `per_client` requests in progress; and
when the listener is full, the connection that has waited longest for a request head
(an idle keep-alive, or a slowloris) is closed to make room for the newcomer, instead of
the newcomer being turned away. Connections from trusted proxies (the ALB, which opens
one per request in flight) are not capped per connection; their requests are, by the
client named in X-Forwarded-For.

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
from jpixd.web.guard import Proxies, client_key, read_form

# Bodies read as forms (aiohttp keeps the parsed form for the handler's post()).
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass
class Limits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 256
    per_client: int | None = None  # None: no share per client (the operator listener)


@dataclass
class _Conn:
    transport: asyncio.Transport
    client: str | None  # whose share it counts in (None: a trusted proxy's)
    waiting_since: float | None = None  # waiting for a request head since (monotonic)


_NO_PROXIES = Proxies(())


def _peer_key(transport: asyncio.BaseTransport, proxies: Proxies) -> str | None:
    peer = transport.get_extra_info("peername")
    addr = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
    if proxies.trusted(addr):
        return None
    return client_key(addr, proxies.ipv6_prefix)


@dataclass
class Shedder:
    limits: Limits
    metrics: Metrics | None = None
    listener: str = "admin"
    # Whose X-Forwarded-For is believed: read on each use (a reload may change it).
    proxies_of: Callable[[], Proxies] = field(default=lambda: _NO_PROXIES)
    counted: dict[int, int] = field(default_factory=dict)  # handler id → transport id
    conns: dict[int, _Conn] = field(default_factory=dict)  # transport id → connection
    timers: dict[int, asyncio.TimerHandle] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)  # client → requests

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
        client = _peer_key(transport, self.proxies_of()) if self.limits.per_client else None
        if client is not None and self.limits.per_client is not None and sum(
                1 for c in self.conns.values() if c.client == client) >= self.limits.per_client:
            self._shed("client_limit")
            transport.abort()
            return
        if self.active >= self.limits.max_connections and not self._evict_idle():
            self._shed("connection_limit")
            transport.abort()
            return
        self.counted[id(handler)] = id(transport)
        self.conns[id(transport)] = _Conn(transport, client)
        self.arm(transport)

    def _evict_idle(self) -> bool:
        """Close the connection that has waited longest for a request head (an idle
        keep-alive or a slowloris): a newcomer is worth more than either."""
        waiting = [c for c in self.conns.values()
                   if c.waiting_since is not None and not c.transport.is_closing()]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.waiting_since or 0.0)
        self._shed("idle_evicted")
        self._forget(id(oldest.transport))
        oldest.transport.abort()
        return True

    def _forget(self, tid: int) -> None:
        """Stop counting a connection (closed, or being closed by us)."""
        self.conns.pop(tid, None)
        for hid in [h for h, t in self.counted.items() if t == tid]:
            del self.counted[hid]
        if handle := self.timers.pop(tid, None):
            handle.cancel()

    def _closed(self, handler: RequestHandler) -> None:
        tid = self.counted.pop(id(handler), None)
        if tid is not None:
            self._forget(tid)

    def arm(self, transport: asyncio.BaseTransport | None) -> None:
        """(Re)start the wait for a request head on this connection."""
        if transport is None or transport.is_closing() or id(transport) not in self.conns:
            return
        self.disarm(transport)
        loop = asyncio.get_running_loop()
        self.conns[id(transport)].waiting_since = loop.time()
        self.timers[id(transport)] = loop.call_later(self.limits.header_timeout,
                                                     self._expire, transport)

    def disarm(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is None:
            return
        if conn := self.conns.get(id(transport)):
            conn.waiting_since = None
        if handle := self.timers.pop(id(transport), None):
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
        """Outermost: the head has arrived; the wait restarts once the answer is out.
        A client with `per_client` requests in progress already gets a 429 at once."""
        self.disarm(request.transport)
        client = self.proxies_of().limit_key(request) if self.limits.per_client else None
        try:
            if client is not None:
                if self.in_flight.get(client, 0) >= (self.limits.per_client or 0):
                    self._shed("client_requests")
                    raise web.HTTPTooManyRequests(text="too many requests at once")
                self.in_flight[client] = self.in_flight.get(client, 0) + 1
            try:
                response: web.StreamResponse = await handler(request)
                return response
            finally:
                if client is not None:
                    left = self.in_flight.pop(client, 1) - 1
                    if left:
                        self.in_flight[client] = left
        finally:
            self.arm(request.transport)

    @web.middleware
    async def bodies(self, request: web.Request,
                     handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        """Innermost: the body is read within `body_timeout` (the handler then gets it
        from aiohttp's cache), so a client cannot hold a handler by dripping a body. A
        form is read as a form: aiohttp parses multipart from the stream, which a plain
        read() would leave empty (RFC 8058's one-click POST is multipart/form-data)."""
        if request.body_exists:
            try:
                async with asyncio.timeout(self.limits.body_timeout):
                    if request.content_type in FORMS:
                        await read_form(request)
                    else:
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
