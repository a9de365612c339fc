"""A real channel receiver on loopback for the tests (issue 26): an aiohttp server on its
own thread and event loop, so that a test can use it beside an in-process daemon or a
real `jpixd run` child alike. Each path is one receiver (a webhook, a Slack or a Teams
URL): it checks a webhook's signature under the secret it was given, records what
arrived, and answers as told (status 0: no answer until `release` is set)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from jpixd.channels import signing


@dataclass(frozen=True)
class Arrival:
    path: str
    headers: dict[str, str]
    body: bytes
    signed: bool | None  # None: no secret given for this path (Slack, Teams)
    at: float  # time.monotonic()

    def json(self) -> Any:
        return json.loads(self.body)

    def signed_by(self, secret: bytes) -> bool:
        """Checked now (a secret learnt after the message came)."""
        return signing.verify(secret, self.headers.get(signing.HEADER, ""), self.body,
                              now=int(datetime.now(UTC).timestamp()))


class Receiver:
    def __init__(self) -> None:
        self.secrets: dict[str, bytes] = {}
        self.answers: dict[str, list[tuple[int, dict[str, str]]]] = defaultdict(list)
        self.arrivals: list[Arrival] = []
        self.release = threading.Event()
        self.on_arrival: Callable[[Arrival], None] | None = None
        self._cond = threading.Condition()
        self.base = ""

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    def answer(self, path: str, *answers: int | tuple[int, dict[str, str]]) -> None:
        with self._cond:
            self.answers[path].extend(a if isinstance(a, tuple) else (a, {}) for a in answers)

    def at(self, path: str) -> list[Arrival]:
        with self._cond:
            return [a for a in self.arrivals if a.path == path]

    def wait_for(self, done: Callable[[list[Arrival]], bool], timeout: float = 15.0
                 ) -> list[Arrival]:
        with self._cond:
            if not self._cond.wait_for(lambda: done(self.arrivals), timeout):
                raise AssertionError(f"receiver: not within {timeout}s; arrived: "
                                     f"{[(a.path, a.body[:80]) for a in self.arrivals]}")
            return list(self.arrivals)

    async def wait(self, done: Callable[[list[Arrival]], bool], within: float = 15.0
                   ) -> list[Arrival]:
        return await asyncio.to_thread(self.wait_for, done, within)

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        body = await request.read()
        secret = self.secrets.get(path)
        signed = None if secret is None else signing.verify(
            secret, request.headers.get(signing.HEADER, ""), body,
            now=int(datetime.now(UTC).timestamp()))
        arrival = Arrival(path, dict(request.headers), body, signed, time.monotonic())
        with self._cond:
            self.arrivals.append(arrival)
            status, headers = self.answers[path].pop(0) if self.answers[path] else (200, {})
            self._cond.notify_all()
        if self.on_arrival is not None:
            self.on_arrival(arrival)
        if status == 0:
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait)
            status = 200
        return web.Response(status=status, headers=headers, text="ok")


@contextmanager
def channel_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{path}", receiver._handle)
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        receiver.base = f"http://127.0.0.1:{port}"
        started.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10), "receiver did not start"
    try:
        yield receiver
    finally:
        receiver.release.set()
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
