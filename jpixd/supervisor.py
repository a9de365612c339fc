"""Erlang-style supervision of the daemon's loops (SPEC §1).

One TaskGroup owns a task per loop. A loop that raises is logged with its traceback,
counted and restarted after a growing delay; more than `max_restarts` crashes within
`restart_window` mean something is badly wrong, so the supervisor gives up and the
process exits non-zero for systemd to restart it cleanly.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from jpixd.config import SupervisorConfig
from jpixd.exhaustion import exhaustion
from jpixd.loop import Heartbeat, Loop
from jpixd.metrics import Metrics
from jpixd.retry import Backoff

log = structlog.get_logger("jpixd.supervisor")


@dataclass
class LoopStatus:
    name: str
    heartbeat: Heartbeat
    stale_after: float
    up: bool = False
    restarts: int = 0
    last_error: str | None = None
    exhausted: str | None = None  # the resource its last stop ran out of
    crashes: deque[float] = field(default_factory=deque)
    loop: Loop | None = None  # for what it says of itself (degraded)

    def fresh(self) -> bool:
        return self.up and self.heartbeat.age() <= self.stale_after

    def to_json(self) -> dict[str, object]:
        return {
            "up": self.up,
            "fresh": self.fresh(),
            "heartbeat_age_seconds": round(self.heartbeat.age(), 3),
            "restarts": self.restarts,
            "last_error": self.last_error,
            "waiting_for": self.exhausted if not self.up else None,
            "degraded": self.loop.degraded if self.loop is not None else None,
        }


def _degraded(lp: Loop) -> Callable[[], float]:
    return lambda: 1.0 if lp.degraded else 0.0


class Supervisor:
    def __init__(self, loops: Sequence[Loop], metrics: Metrics, config: SupervisorConfig,
                 monotonic: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.loops = list(loops)
        self.metrics = metrics
        self.config = config
        self._monotonic = monotonic
        self.stopping = asyncio.Event()
        self.started = asyncio.Event()
        # Notified whenever a loop goes up or down (what the tests wait on).
        self.changed = asyncio.Condition()
        self.exit_code = 0
        self.failure: str | None = None
        self.status: dict[str, LoopStatus] = {
            lp.name: LoopStatus(lp.name, Heartbeat(monotonic), lp.stale_after, loop=lp)
            for lp in loops
        }
        names = [lp.name for lp in loops]
        if len(set(names)) != len(names):
            raise ValueError(f"loop names must be unique: {names}")
        for name in names:  # every series from start-up, as 0: alert rules see them
            metrics.loop_restarts.labels(name)
        for lp in loops:  # read at scrape time, so never out of date
            st = self.status[lp.name]
            metrics.loop_heartbeat_age.labels(lp.name).set_function(st.heartbeat.age)
            metrics.loop_degraded.labels(lp.name).set_function(_degraded(lp))

    def stop(self) -> None:
        self.stopping.set()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Until `predicate()` holds, checked whenever a loop goes down or restarts
        (the caller bounds the wait)."""
        async with self.changed:
            await self.changed.wait_for(predicate)

    def healthy(self, detail: bool = True) -> tuple[bool, list[str]]:
        """Every loop up and fresh; otherwise the reasons, one per loop (with the loop's
        last error only when `detail`: it can quote feed or Backlog data)."""
        reasons = []
        for st in self.status.values():
            if not st.up and st.exhausted:
                # Said even without detail: it names a resource, never data.
                reasons.append(f"loop {st.name} is waiting for {st.exhausted}")
            elif not st.up:
                reasons.append(f"loop {st.name} is down"
                               + (f" ({st.last_error})" if st.last_error and detail else ""))
            elif not st.fresh():
                reasons.append(f"loop {st.name} has not made progress for "
                               f"{st.heartbeat.age():.0f}s")
        return not reasons, reasons

    async def run(self) -> int:
        """Run every loop until `stop()` or a loop exceeds the restart intensity."""
        async with asyncio.TaskGroup() as tg:
            for lp in self.loops:
                tg.create_task(self._supervise(lp), name=lp.name)
            # One turn of the event loop lets every task enter its loop before we announce.
            await asyncio.sleep(0)
            self.started.set()
        return self.exit_code

    async def _supervise(self, lp: Loop) -> None:
        st = self.status[lp.name]
        while not self.stopping.is_set():
            st.heartbeat.beat()
            st.up = True
            self.metrics.loop_up.labels(lp.name).set(1)
            async with self.changed:
                self.changed.notify_all()
            crashed, exhausted = False, None
            try:
                await lp.run(st.heartbeat, self.stopping)
                if self.stopping.is_set():
                    return
                raise RuntimeError("loop returned without being asked to stop")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                crashed = True
                st.last_error = f"{type(exc).__name__}: {exc}"
                exhausted = st.exhausted = exhaustion(exc)
                if exhausted:
                    log.error("loop stopped: the machine is out of a resource; retrying "
                              "until it is back", loop=lp.name, resource=exhausted,
                              error=st.last_error)
                else:
                    log.exception("loop crashed", loop=lp.name)
            finally:
                # Down before any backoff: readiness must be false while we wait.
                st.up = False
                self.metrics.loop_up.labels(lp.name).set(0)
            async with self.changed:
                self.changed.notify_all()
            if crashed and exhausted:
                # A full disk is no bug and a restart cannot mend it: not counted towards
                # giving up, so that jpixd recovers by itself once space is back (under
                # systemd's StartLimitBurst a process exit would stay down for good).
                st.restarts += 1
                self.metrics.loop_restarts.labels(st.name).inc()
                await self._backoff(10)
            elif crashed:
                if not self._note_crash(st):
                    return
                await self._backoff(len(st.crashes))

    def _note_crash(self, st: LoopStatus) -> bool:
        """Record a crash; False (and the whole process stops) past the intensity limit."""
        now = self._monotonic()
        window = self.config.restart_window.total_seconds()
        st.crashes.append(now)
        while st.crashes and st.crashes[0] < now - window:
            st.crashes.popleft()
        if len(st.crashes) > self.config.max_restarts:
            self.failure = (f"loop {st.name} crashed {len(st.crashes)} times within "
                            f"{window:.0f}s: giving up ({st.last_error})")
            log.error("restart intensity exceeded", loop=st.name, crashes=len(st.crashes))
            self.exit_code = 1
            self.stopping.set()
            return False
        st.restarts += 1
        self.metrics.loop_restarts.labels(st.name).inc()
        return True

    async def _backoff(self, crashes: int) -> None:
        base = self.config.restart_backoff.total_seconds()
        cap = self.config.restart_backoff_max.total_seconds()
        delay = Backoff(base, cap).delay(max(crashes, 1), self.rng)  # jpixd.retry
        log.info("restarting loop after backoff", delay=delay)
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=delay)
        except TimeoutError:
            pass
