"""PostgreSQL: what several hosts say to each other through the database (the SQL of
`jpixd.cluster`): the live hosts, leadership as session advisory locks, the throttle one
host reports to the others, and the LISTEN that wake-ups arrive on.

A `Session` is one connection of its own, never the pool's: an advisory lock belongs to
the session that took it, and so does a LISTEN.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from jpixd.store.pg.base import CHANNEL


def lock_key(role: str) -> int:
    """A stable 63-bit advisory-lock key per role, the same on every host."""
    return int.from_bytes(hashlib.sha256(f"jpixd:leader:{role}".encode()).digest()[:8],
                          "big") >> 1


def application_name(host: str) -> str:
    return f"jpixd-cluster {host}"[:63]


@dataclass(frozen=True)
class Host:
    name: str
    started_at: datetime
    seen_at: datetime
    leads: tuple[str, ...]  # the roles whose lock its session holds


class Session:
    """One host's connection for beats, locks and LISTEN. The server ends it after
    `idle_after` without a statement (`idle_session_timeout`), which frees its locks."""

    def __init__(self, conn: asyncpg.Connection[asyncpg.Record], host: str) -> None:
        self._conn = conn
        self.host = host

    @classmethod
    async def open(cls, url: str, password: str | None, host: str, *, idle_after: float,
                   connect_within: float, heard: Callable[[str], None]) -> Session:
        conn = await asyncpg.connect(
            dsn=url, password=password, timeout=connect_within,
            server_settings={"idle_session_timeout": str(int(idle_after * 1000)),
                             "application_name": application_name(host)})
        await conn.add_listener(CHANNEL, lambda _c, _pid, _ch, payload: heard(str(payload)))
        return cls(conn, host)

    @property
    def closed(self) -> bool:
        return self._conn.is_closed()

    def end(self) -> None:
        """At once, without waiting on the server: the locks go with the session."""
        if not self._conn.is_closed():
            self._conn.terminate()

    async def beat(self, now: datetime, alive_within: timedelta,
                   roles: Sequence[str]) -> list[Host]:
        """Say this host is alive; the hosts seen within `alive_within`, each with the
        roles whose lock its session holds."""
        await self._conn.execute(
            "INSERT INTO hosts (name, started_at, seen_at) VALUES ($1, $2, $2) "
            "ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at", self.host, now)
        rows = await self._conn.fetch("SELECT name, started_at, seen_at FROM hosts "
                                      "WHERE seen_at >= $1 ORDER BY name", now - alive_within)
        holders = await self._conn.fetch(
            "SELECT l.objid::bigint | (l.classid::bigint << 32) AS key, a.application_name "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted")
        role_of = {lock_key(role): role for role in roles}
        held_by: dict[str, list[str]] = {}
        for h in holders:
            role = role_of.get(int(h["key"]))
            if role is not None:
                held_by.setdefault(str(h["application_name"]), []).append(role)
        return [Host(r["name"], r["started_at"], r["seen_at"],
                     tuple(sorted(held_by.get(application_name(r["name"]), ()))))
                for r in rows]

    async def try_lead(self, role: str) -> bool:
        """Take the role's lock if nobody holds it (held until the session ends)."""
        return bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)",
                                              lock_key(role)))

    async def last_throttle(self) -> dict[str, str]:
        """{"at": …, "host": …} of the last throttle a host reported, or {}."""
        raw = await self._conn.fetchval("SELECT value::text FROM control "
                                        "WHERE key = 'throttle'")
        return dict(json.loads(raw)) if raw else {}

    async def forget_hosts(self, before: datetime) -> None:
        await self._conn.execute("DELETE FROM hosts WHERE seen_at < $1", before)


@asynccontextmanager
async def _briefly(url: str, password: str | None) -> AsyncIterator[
        asyncpg.Connection[asyncpg.Record]]:
    conn = await asyncpg.connect(dsn=url, password=password, timeout=5)
    try:
        yield conn
    finally:
        conn.terminate()


async def report_throttle(url: str, password: str | None, host: str, now: datetime) -> None:
    """On a connection of its own, not the host's session: a sender reports it while the
    beat may be using the session (one statement at a time on a connection)."""
    async with _briefly(url, password) as conn:
        await conn.execute(
            "INSERT INTO control (key, value, updated_at) VALUES ('throttle', $1::jsonb, $2) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            json.dumps({"at": now.isoformat(), "host": host}), now)


async def leave(url: str, password: str | None, host: str) -> None:
    """Out of the hosts table: the others take its share of the rate at their next beat."""
    async with _briefly(url, password) as conn:
        await conn.execute("DELETE FROM hosts WHERE name = $1", host)
