"""Claims under a lease, as both senders hold them (mail: `jpixd.mail.sender`; channel
messages: `jpixd.channels.sender`): who claims, and the renewal that keeps a round's
rows its own while the round runs. A row whose lease ran out is anyone's to send again
(the claimer died mid-send)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import structlog

from jpixd.model import Clock

log = structlog.get_logger("jpixd.leases")


def claimer_name(suffix: str = "") -> str:
    """This process, as the rows it claims name it: host, pid and a random part (a
    restarted process is another claimer)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}{suffix}"


@contextlib.asynccontextmanager
async def renewing(renew: Callable[[datetime], Awaitable[int]], lease: float, clock: Clock,
                   *, what: str, renewed: asyncio.Event | None = None
                   ) -> AsyncIterator[None]:
    """While the block runs, `renew(until)` every third of `lease` seconds: a slow or
    throttled round keeps its rows. A failed renewal is logged and tried again at the
    next third (the lease is long); `renewed` is set after each one that worked."""
    async def loop() -> None:
        while True:
            await asyncio.sleep(lease / 3)  # the renewal's cadence, not a wait for an event
            try:
                await renew(clock() + timedelta(seconds=lease))
            except Exception as exc:  # the next renewal may work
                log.warning(f"could not renew the {what} lease", error=str(exc))
                continue
            if renewed is not None:
                renewed.set()

    task = asyncio.create_task(loop(), name=f"{what}-lease-renewal")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
