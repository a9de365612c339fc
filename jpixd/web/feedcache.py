"""The public feeds (`/notices.atom`, `/notices.ics`, a subscriber's calendar), built once
per change and served from memory (security probe N7).

A wordy board made `/notices.ics` 4 MB and 0.8 s of event-loop time per request, on
the one loop that also sends mail and reads bounces: eight feed readers slowed a feed
poll from 7 ms to 7 s. Now a feed is rendered in a worker thread, at most once per
variant and change (concurrent requests for one variant wait for the same build),
kept until the notices change or `ttl` passes, and answered with an ETag (304 to a
reader that has it) and a short `max-age`, so a proxy or the ALB can serve the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from jpixd.model import StoredNotice


@dataclass(frozen=True)
class Feed:
    body: bytes
    etag: str
    last_modified: datetime
    built_at: float  # monotonic


# What a build returns: the document, and the newest change it shows.
Build = Callable[[], Awaitable[tuple[bytes, datetime]]]


class FeedCache:
    def __init__(self, *, ttl: float = 60.0, max_entries: int = 512, recheck: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.max_entries, self.monotonic = ttl, max_entries, monotonic
        self.recheck = recheck  # seconds between two reads of the notices' version
        self._entries: OrderedDict[Hashable, tuple[Hashable, Feed]] = OrderedDict()
        self._flights: dict[Hashable, asyncio.Future[Any]] = {}
        self._snapshot: tuple[Hashable, float, list[StoredNotice]] | None = None
        self._version: tuple[float, Hashable] | None = None
        self.builds = 0  # how many times a feed was rendered (the tests count them)
        # Each notice's part of a feed, rendered once per revision (in the worker threads
        # that build feeds, hence the lock).
        self._parts: dict[Hashable, str] = {}
        self._parts_lock = threading.Lock()
        self.max_parts = 8192

    def part(self, key: Hashable, make: Callable[[], str]) -> str:
        """A notice's entry or events as rendered before, or rendered now and kept: a
        change to one notice renders that one again, not the whole board."""
        with self._parts_lock:
            kept = self._parts.get(key)
        if kept is not None:
            return kept
        made = make()
        with self._parts_lock:
            if len(self._parts) >= self.max_parts:  # old revisions: start afresh
                self._parts.clear()
            self._parts[key] = made
        return made

    async def version(self, read: Callable[[], Awaitable[Hashable]]) -> Hashable:
        """What the notices are now, read at most once a `recheck` (hundreds of feed
        requests a second would otherwise each cost a query, queued with the mail's):
        a change shows in the feeds within a second."""
        now = self.monotonic()
        if self._version is None or now - self._version[0] >= self.recheck:
            self._version = (now, await read())
        return self._version[1]

    async def notices(self, version: Hashable,
                      read: Callable[[], Awaitable[list[StoredNotice]]]) -> list[StoredNotice]:
        """The board's notices as of `version`, read once for every feed built from them
        (each feed then filters them itself)."""
        held = self._snapshot
        if held is not None and held[0] == version and \
                self.monotonic() - held[1] < self.ttl:
            return held[2]
        got: list[StoredNotice] = await self._once(("notices", version), read)
        self._snapshot = (version, self.monotonic(), got)
        return got

    async def get(self, key: Hashable, version: Hashable, build: Build) -> Feed:
        """The feed for `key` as of `version` (what the notices are now): from memory
        when it was built for this version less than `ttl` ago, else built, once, however
        many ask at the same time."""
        held = self._entries.get(key)
        if held is not None and held[0] == version and \
                self.monotonic() - held[1].built_at < self.ttl:
            self._entries.move_to_end(key)
            return held[1]

        async def make() -> Feed:
            body, changed = await build()
            self.builds += 1
            return Feed(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"', changed,
                        self.monotonic())

        feed: Feed = await self._once((key, version), make)
        self._entries[key] = (version, feed)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return feed

    async def _once(self, flight: Hashable, make: Callable[[], Awaitable[Any]]) -> Any:
        """`make()`, once for all who ask for the same `flight` at the same time."""
        pending = self._flights.get(flight)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._flights[flight] = future
        try:
            result = await make()
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: those waiting get it, nobody else needs to
            raise
        finally:
            del self._flights[flight]


def respond(request: web.Request, feed: Feed, content_type: str, *, private: bool = False,
            max_age: int = 60, headers: dict[str, str] | None = None) -> web.Response:
    """The feed, or 304 when the reader already has this version."""
    caching = {"ETag": feed.etag,
               "Last-Modified": feed.last_modified.astimezone(UTC).strftime(
                   "%a, %d %b %Y %H:%M:%S GMT"),
               "Cache-Control": f"{'private' if private else 'public'}, max-age={max_age}",
               **(headers or {})}
    given = request.headers.get("If-None-Match", "")
    if feed.etag in [t.strip().removeprefix("W/") for t in given.split(",")]:
        return web.Response(status=304, headers=caching)
    return web.Response(body=feed.body, content_type=content_type, charset="utf-8",
                        headers=caching)
