"""An aiohttp application served on 127.0.0.1 (a free port) for the length of a test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def serve_app(app: web.Application,
                    release: Callable[[], None] = lambda: None) -> AsyncIterator[str]:
    """Yield the base URL. On exit `release()` runs first (to let handlers that a test
    left hanging finish), so the server stops at once."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        release()
        await runner.cleanup()
