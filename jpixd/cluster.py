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
next beat: so a starting host waits a beat interval before it sends (`start`), and the
sum of the shares never passes the account's rate. A host that dies is counted until
its last beat is `leader_timeout` old: the others send below the rate meanwhile, never
above. A throttle seen by one host is written to the database and slows every host at
its next beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
import structlog

from jpixd.loop import LEADER_ROLES
from jpixd.metrics import Metrics
from jpixd.store.pg.base import CHANNEL

log = structlog.get_logger("jpixd.cluster")

ROLES = LEADER_ROLES


def lock_key(role: str) -> int:
    """A stable 63-bit advisory-lock key per role, the same on every host."""
    return int.from_bytes(hashlib.sha256(f"jpixd:leader:{role}".encode()).digest()[:8],
                          "big") >> 1


def host_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class ClusterView:
    """What the admin status shows."""

    host: str
    leads: list[str] = field(default_factory=list)
    hosts: list[dict[str, object]] = field(default_factory=list)
    connected: bool = False


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
        self.held: set[str] = set()  # locks this host holds
        self.since: dict[str, float] = {}  # when it took each
        self.acting: set[str] = set()  # roles it acts on (held past the grace)
        self.last_ok = -1e9
        self.hosts_now = self.hosts_before = 1
        # The last throttle another host reported that this host has acted on; the
        # first beat only learns where things stand.
        self._throttle_seen: str | None = None
        self._throttle_known = False
        self._on_throttle: list[Callable[[], None]] = []
        self.view = ClusterView(self.host)
        self.changed = asyncio.Event()  # set when this host's roles change (tests wait)
        self.beaten = asyncio.Event()  # set after every beat, good or bad (tests wait)
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_hosts: list[Callable[[int], None]] = []
        self._on_gain: list[Callable[[set[str]], None]] = []
        self._on_notice: list[Callable[[str], None]] = []
        for role in ROLES:
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

    def leads(self, role: str) -> bool:
        return role in self.acting and self.monotonic() - self.last_ok < self.trust

    @property
    def sharing(self) -> int:
        """How many hosts this host splits the send rate with: the larger of its last two
        counts, so that a host that just joined is counted before every other host has
        seen it (the sum of the shares never passes the account's rate)."""
        return max(self.hosts_now, self.hosts_before, 1)

    def on_hosts(self, callback: Callable[[int], None]) -> None:
        """`callback(sharing)` runs when the number of hosts sharing the rate changes."""
        self._on_hosts.append(callback)
        callback(self.sharing)

    def on_gain(self, callback: Callable[[set[str]], None]) -> None:
        """`callback(roles)` runs when this host takes roles over (to start at once)."""
        self._on_gain.append(callback)

    def on_notice(self, callback: Callable[[str], None]) -> None:
        """`callback(what)` runs when any host (this one too) commits a change the
        others act on at once: "deliveries" (new mail due) or "sending" (a pause or a
        resume). Heard on the beat's connection (LISTEN), between beats."""
        self._on_notice.append(callback)

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        for callback in self._on_notice:
            callback(str(payload))

    def on_throttle(self, callback: Callable[[], None]) -> None:
        """`callback` runs when another host was throttled by SES (at this host's beat)."""
        self._on_throttle.append(callback)

    async def report_throttle(self) -> None:
        """This host was throttled by SES: the others slow too, at their next beat."""
        conn = self._conn
        if conn is None:
            return
        value = json.dumps({"at": self.clock().isoformat(), "host": self.host})
        try:
            await conn.execute(
                "INSERT INTO control (key, value, updated_at) VALUES ('throttle', $1::jsonb, "
                "$2) ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at", value, self.clock())
        except Exception as exc:  # the beat will say what is wrong with the connection
            log.warning("could not tell the other hosts of a throttle", error=str(exc))

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        """Join: one beat, then a beat interval for the other hosts to see this one
        (their shares shrink before this host takes its own), then another beat."""
        await self._beat()
        await asyncio.sleep(self.beat_every * 1.5)
        await self._beat()
        self._task = asyncio.create_task(self._run(), name="cluster")

    async def close(self) -> None:
        """Leave: stop beating, end the session (its locks go with it) and take this
        host out of the hosts table. Bounded in time: a shutdown never waits on it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=self.beat_every * 2)
        self._drop_now()
        # Gone from the hosts table: the others take its share at their next beat.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._forget(), timeout=5)

    async def _forget(self) -> None:
        conn = await asyncpg.connect(dsn=self.url, password=self.password, timeout=5)
        try:
            await conn.execute("DELETE FROM hosts WHERE name = $1", self.host)
        finally:
            conn.terminate()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.beat_every)
            await self._beat()

    async def _beat(self) -> None:
        try:
            if self._conn is None or self._conn.is_closed():
                # A session that ended took its locks with it: whatever this host held
                # is gone, even if nothing has failed yet on this side.
                self._drop_now()
                await self._connect()
            assert self._conn is not None
            await asyncio.wait_for(self._round(self._conn), timeout=self.beat_every)
            self.last_ok = self.monotonic()
            self.view.connected = True
        except Exception as exc:  # the database or the network: try again next beat
            log.warning("cluster heartbeat failed; leading nothing until it works",
                        error=str(exc) or type(exc).__name__)
            self._drop_now()
        finally:
            self.beaten.set()

    async def _connect(self) -> None:
        ms = int(self.timeout * 1000)
        self._conn = await asyncpg.connect(
            dsn=self.url, password=self.password, timeout=self.beat_every,
            server_settings={"idle_session_timeout": str(ms),
                             "application_name": f"jpixd-cluster {self.host}"[:63]})
        await self._conn.add_listener(CHANNEL, self._heard)

    async def _round(self, conn: asyncpg.Connection[asyncpg.Record]) -> None:
        now = self.clock()
        await conn.execute(
            "INSERT INTO hosts (name, started_at, seen_at) VALUES ($1, $2, $2) "
            "ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at", self.host, now)
        alive = await conn.fetch("SELECT name, started_at, seen_at FROM hosts "
                                 "WHERE seen_at >= $1 ORDER BY name",
                                 now - timedelta(seconds=self.timeout))
        before = self.sharing
        self.hosts_before, self.hosts_now = self.hosts_now, max(len(alive), 1)
        raw = await conn.fetchval("SELECT value::text FROM control WHERE key = 'throttle'")
        throttle = json.loads(raw) if raw else {}
        if self._throttle_known and throttle.get("at") != self._throttle_seen \
                and throttle.get("host") != self.host:
            for callback in self._on_throttle:
                callback()
        self._throttle_seen, self._throttle_known = throttle.get("at"), True
        for role in ROLES:
            if role not in self.held and await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1)", lock_key(role)):
                self.held.add(role)
                self.since[role] = self.monotonic()
        gained = sorted(r for r in self.held - self.acting
                        if self.monotonic() - self.since[r] >= self.grace)
        self.acting.update(gained)
        holders = await conn.fetch(
            "SELECT l.objid::bigint | (l.classid::bigint << 32) AS key, a.application_name "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted")
        by_key = {int(r["key"]): str(r["application_name"]) for r in holders}
        self.view.hosts = [{"name": r["name"], "started_at": r["started_at"].isoformat(),
                            "seen_at": r["seen_at"].isoformat(),
                            "leads": [role for role in ROLES
                                      if by_key.get(lock_key(role), "").endswith(
                                          " " + str(r["name"]))]} for r in alive]
        if "housekeeping" in self.acting:  # hosts gone for an hour: out of the table
            await conn.execute("DELETE FROM hosts WHERE seen_at < $1",
                               now - timedelta(hours=1))
        self.view.leads = sorted(self.acting)
        for role in ROLES:
            self.metrics.leader.labels(role).set(1 if role in self.acting else 0)
        if gained:
            log.info("leading", roles=gained, host=self.host)
            self.changed.set()
            for gain in self._on_gain:
                gain(set(gained))
        if self.sharing != before:
            log.info("hosts sharing the send rate", hosts=self.sharing)
            for told in self._on_hosts:
                told(self.sharing)

    def _drop_now(self) -> None:
        """Lead nothing: the session (and with it every lock) is ended at once. Not a
        polite close: that waits on the server, and a host in trouble must not."""
        if self.acting:
            log.warning("no longer leading", roles=sorted(self.acting), host=self.host)
            self.changed.set()
        self.held.clear()
        self.acting.clear()
        self.since.clear()
        self.view.leads, self.view.connected = [], False
        for role in ROLES:
            self.metrics.leader.labels(role).set(0)
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()
