"""The interface every supervised loop implements.

A loop does one unit of work in `run_once()` (tests call it directly, like arq's burst
mode) and `run()` repeats it until asked to stop, beating its heartbeat after each unit
so that readiness and the systemd watchdog can tell a wedged loop from a busy one.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what a reload hands each loop
    import aiohttp

    from jpixd.config import Config
    from jpixd.metrics import Metrics
    from jpixd.web.links import LinkBuilder

# The loops (and parts of loops) that run on one host at a time when several hosts share
# a PostgreSQL database (jpixd.cluster); `jpixd_leader{loop}` has a series for each.
LEADER_ROLES = ("feeds", "backlog", "guard", "housekeeping", "archive")


def _always(role: str) -> bool:
    return True


@dataclass(frozen=True)
class Reloaded:
    """A reload as each loop sees it (`Loop.apply`): the new configuration, which of its
    parts changed in place ("sources", "mail", "timezone", "web", …: jpixd.reload), and
    what the daemon rebuilt or shares (the public pages' links, the HTTP session)."""

    cfg: Config
    live: frozenset[str]
    metrics: Metrics
    links: LinkBuilder | None = None
    http: aiohttp.ClientSession | None = None

    def touches(self, *parts: str) -> bool:
        return any(p in self.live for p in parts)


class Heartbeat:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self.last = monotonic()

    def beat(self) -> None:
        self.last = self._monotonic()

    def age(self) -> float:
        return self._monotonic() - self.last


class Loop(ABC):
    """A periodic loop: `run_once()`, then wait `interval` or until woken or stopped."""

    name: str = "loop"
    interval: float = 60.0
    # A loop that must run on one host at a time names its role (LEADER_ROLES); a loop
    # of which one part must (the guard's judgement, pruning) names that part's role.
    role: str | None = None
    part_role: str | None = None

    def __init__(self) -> None:
        # Set by the admin API ("poll now") or by another component through the store's
        # effects; wakes the loop before its interval has run out.
        self.wake = asyncio.Event()
        # Set once the first unit of work is done (tests and start-up ordering wait on it).
        self.first_round = asyncio.Event()
        self._round = asyncio.Event()
        # The supervisor's heartbeat while running; long units of work call progress()
        # so that a slow round (a throttled send batch) is not taken for a wedged loop.
        self.heartbeat: Heartbeat | None = None
        # Why the loop is running but not doing its job (a peer unreachable), or None:
        # shown in /readyz and the admin status; not unready, since waiting is its job.
        self.degraded: str | None = None
        # Whether this host holds a role now: always on one host (SQLite); on several,
        # the cluster's answer. A loop with a role waits while another host holds it.
        self.leads: Callable[[str], bool] = _always

    @property
    def standby(self) -> bool:
        """Another host runs this loop now."""
        return self.role is not None and not self.leads(self.role)

    def progress(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.beat()

    @property
    def stale_after(self) -> float:
        """Seconds without a heartbeat after which the loop counts as wedged."""
        return max(3 * self.interval, 60.0)

    def apply(self, change: Reloaded) -> None:  # noqa: B027  (most loops take nothing)
        """A reload: take what concerns this loop from the new configuration. The daemon
        calls every loop's; each decides what is its own (the daemon routes nothing)."""

    def status(self) -> dict[str, object] | None:
        """What the admin API shows of this loop beyond up, down and degraded."""
        return None

    @abstractmethod
    async def run_once(self) -> None:
        """Do one unit of work. Expected faults are handled inside; a raise is a bug."""

    async def next_round(self) -> None:
        """Return once the next unit of work has been done (for "wait until settled")."""
        await self._round.wait()

    def next_delay(self) -> float:
        return self.interval

    def reset(self) -> None:  # noqa: B027  (a hook: most loops keep nothing between runs)
        """Forget what the last run learnt (called as each run starts): a loop restarted
        by the supervisor after a crash starts from fresh state, as after a process
        start, instead of from whatever the crash left half-done."""

    async def run(self, heartbeat: Heartbeat, stopping: asyncio.Event) -> None:
        self.heartbeat = heartbeat
        self.reset()
        while not stopping.is_set():
            if self.standby:  # alive and waiting its turn: not a round of work
                heartbeat.beat()
                await self._pause(self.next_delay(), stopping)
                continue
            await self.run_once()
            heartbeat.beat()
            self.first_round.set()
            done, self._round = self._round, asyncio.Event()
            done.set()
            await self._pause(self.next_delay(), stopping)

    async def _pause(self, seconds: float, stopping: asyncio.Event) -> None:
        """Sleep up to `seconds`, returning early when woken or asked to stop."""
        if stopping.is_set() or self.wake.is_set():
            self.wake.clear()
            return
        waiters = [asyncio.create_task(stopping.wait()), asyncio.create_task(self.wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=max(seconds, 0.0),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            self.wake.clear()
