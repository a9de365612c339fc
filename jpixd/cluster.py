"""Several hosts on one PostgreSQL database (issue 16): who leads each singleton loop,
which hosts are alive, and this host's share of the account's send rate.

Leadership is a PostgreSQL session-level advisory lock per role, held on a connection of
its own (not the pool's: a lock belongs to the session that took it). The connection
beats every quarter of `leader_timeout` (T); the server ends it after T without a word
(`idle_session_timeout`), which frees its locks, and a host that dies frees them at once
(its connection closes). Two rules keep two hosts from acting as leader at once, even
when a lock is freed the moment after a beat (a connection cut): a host acts as leader
only while its last good beat is younger than T/2, and a host that has just taken a
lock waits T/2 (less a little for timer jitter) before acting on it, by which time the
old holder has stopped. So a role moves within 3T/4 of its leader's death.

The send rate is shared by the hosts alive (a beat within `leader_timeout`): each takes
`rate / hosts`. A host that joins counts itself at once, and the others see it at their
next beat: so a starting host waits longer than a beat interval before it sends
(`start`), and the sum of the shares never passes the account's rate. A host that dies
is counted until its last beat is `leader_timeout` old: the others send below the rate
meanwhile, never above. A throttle seen by one host is written to the database and
slows every host at its next beat. The SQL of all this is in `jpixd.store.pg.cluster`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from jpixd.loop import LEADER_ROLES
from jpixd.metrics import Metrics
from jpixd.store.pg import cluster as db
from jpixd.store.pg.cluster import Host, Session

log = structlog.get_logger("jpixd.cluster")


def host_name() -> str:
    """Unique per process, even two in one interpreter or a pid reused after a restart."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Cluster:
    def __init__(self, url: str, password: str | None, *, leader_timeout: timedelta,
                 metrics: Metrics, clock: Callable[[], datetime],
                 monotonic: Callable[[], float] = time.monotonic,
                 host: str | None = None) -> None:
        self.url, self.password = url, password
        self.timeout = leader_timeout.total_seconds()
        self.metrics = metrics
        self.clock = clock
        self.monotonic = monotonic
        self.host = host or host_name()
        self.held: dict[str, float] = {}  # role → when this host took its lock
        self.acting: set[str] = set()  # roles it acts on (held past the grace)
        self.last_ok = -1e9
        self.hosts: list[Host] = []  # alive at the last good beat
        # The last throttle another host reported that this host has acted on; the
        # first beat only learns where things stand.
        self._throttle_seen: str | None = None
        self._throttle_known = False
        self._on_throttle: list[Callable[[], None]] = []
        self.changed = asyncio.Event()  # set when this host's roles change (tests wait)
        self.beaten = asyncio.Event()  # set after every beat, good or bad (tests wait)
        self._session: Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._leaving = False
        self._on_hosts: list[Callable[[int], None]] = []
        self._on_gain: list[Callable[[set[str]], None]] = []
        self._on_notice: list[Callable[[str], None]] = []
        for role in LEADER_ROLES:
            metrics.leader.labels(role).set(0)

    # ------------------------------------------------------------------ asked by loops

    @property
    def beat_every(self) -> float:
        return self.timeout / 4

    @property
    def trust(self) -> float:
        """How long after its last good beat a host still acts as leader."""
        return self.timeout / 2

    @property
    def grace(self) -> float:
        """How long a host that took a lock waits before acting on it."""
        return 0.45 * self.timeout

    @property
    def connected(self) -> bool:
        return self._session is not None and not self._session.closed

    def leads(self, role: str) -> bool:
        return role in self.acting and self.monotonic() - self.last_ok < self.trust

    def leader_of(self, role: str) -> str | None:
        """The host whose session held `role`'s lock at the last beat (this host too,
        while it waits out the grace before acting on a lock it has just taken)."""
        return next((h.name for h in self.hosts if role in h.leads), None)

    @property
    def sharing(self) -> int:
        """How many hosts this host splits the send rate with."""
        return max(len(self.hosts), 1)

    def on_hosts(self, callback: Callable[[int], None]) -> None:
        """`callback(sharing)` runs now and whenever the number of hosts changes."""
        self._on_hosts.append(callback)
        callback(self.sharing)

    def on_gain(self, callback: Callable[[set[str]], None]) -> None:
        """`callback(roles)` runs when this host takes roles over (to start at once)."""
        self._on_gain.append(callback)

    def on_notice(self, callback: Callable[[str], None]) -> None:
        """`callback(what)` runs when any host (this one too) commits a change the
        others act on at once: "deliveries" (new mail due) or "sending" (a pause or a
        resume). Heard on the beat's session (LISTEN), between beats."""
        self._on_notice.append(callback)

    def _heard(self, what: str) -> None:
        for callback in self._on_notice:
            callback(what)

    def on_throttle(self, callback: Callable[[], None]) -> None:
        """`callback` runs when another host was throttled by SES (at this host's beat)."""
        self._on_throttle.append(callback)

    async def report_throttle(self) -> None:
        """This host was throttled by SES: the others slow too, at their next beat."""
        try:
            await db.report_throttle(self.url, self.password, self.host, self.clock())
        except Exception as exc:  # the others slow at their own throttle instead
            log.warning("could not tell the other hosts of a throttle", error=str(exc))

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        """Join: one beat, then a beat interval and a half for the other hosts to see
        this one (their shares shrink before this host takes its own), another beat."""
        await self._beat()
        await asyncio.sleep(self.beat_every * 1.5)
        await self._beat()
        self._task = asyncio.create_task(self._run(), name="cluster")

    async def close(self) -> None:
        """Leave: stop beating, end the session (its locks go with it) and take this
        host out of the hosts table. Bounded in time: a shutdown never waits on it."""
        task, self._task = self._task, None
        self._leaving = True  # a beat a cancellation missed does not beat again
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=self.beat_every * 2)
        self._drop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(db.leave(self.url, self.password, self.host), timeout=5)

    async def _run(self) -> None:
        # Python 3.11's wait_for can swallow a cancellation that meets its inner task's
        # end (fixed in 3.12): the flag, not only the cancel, ends the beating.
        while not self._leaving:
            await asyncio.sleep(self.beat_every)
            if not self._leaving:
                await self._beat()

    async def _beat(self) -> None:
        try:
            if self._session is None or self._session.closed:
                # A session that ended took its locks with it: whatever this host held
                # is gone, even if nothing has failed yet on this side.
                self._drop()
                self._session = await Session.open(
                    self.url, self.password, self.host, idle_after=self.timeout,
                    connect_within=self.beat_every, heard=self._heard)
            await asyncio.wait_for(self._round(self._session), timeout=self.beat_every)
            self.last_ok = self.monotonic()
        except Exception as exc:  # the database or the network: try again next beat
            log.warning("cluster heartbeat failed; leading nothing until it works",
                        error=str(exc) or type(exc).__name__)
            self._drop()
        finally:
            self.beaten.set()

    async def _round(self, session: Session) -> None:
        now = self.clock()
        before = self.sharing
        for role in LEADER_ROLES:
            if role not in self.held and await session.try_lead(role):
                self.held[role] = self.monotonic()
        self.hosts = await session.beat(now, timedelta(seconds=self.timeout), LEADER_ROLES)
        throttle = await session.last_throttle()
        if self._throttle_known and throttle.get("at") != self._throttle_seen \
                and throttle.get("host") != self.host:
            for callback in self._on_throttle:
                callback()
        self._throttle_seen, self._throttle_known = throttle.get("at"), True
        gained = {r for r, since in self.held.items()
                  if r not in self.acting and self.monotonic() - since >= self.grace}
        self.acting |= gained
        if "housekeeping" in self.acting:  # hosts gone for an hour: out of the table
            await session.forget_hosts(now - timedelta(hours=1))
        for role in LEADER_ROLES:
            self.metrics.leader.labels(role).set(1 if role in self.acting else 0)
        if gained:
            log.info("leading", roles=sorted(gained), host=self.host)
            self.changed.set()
            for gain in self._on_gain:
                gain(gained)
        if self.sharing != before:
            log.info("hosts sharing the send rate", hosts=self.sharing)
            for told in self._on_hosts:
                told(self.sharing)

    def _drop(self) -> None:
        """Lead nothing: the session (and with it every lock) is ended at once. Not a
        polite close: that waits on the server, and a host in trouble must not."""
        if self.acting:
            log.warning("no longer leading", roles=sorted(self.acting), host=self.host)
            self.changed.set()
        self.held.clear()
        self.acting.clear()
        for role in LEADER_ROLES:
            self.metrics.leader.labels(role).set(0)
        session, self._session = self._session, None
        if session is not None:
            session.end()

    def status(self) -> dict[str, object]:
        """What the admin status and the console show."""
        return {"backend": "postgresql", "host": self.host, "leads": sorted(self.acting),
                "connected": self.connected, "sharing_send_rate": self.sharing,
                "hosts": [{"name": h.name, "started_at": h.started_at.isoformat(),
                           "seen_at": h.seen_at.isoformat(), "leads": list(h.leads)}
                          for h in self.hosts]}
