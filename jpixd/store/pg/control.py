"""PostgreSQL: the sending pause, the database's mode (shadow) and the subscribers'
version counter, all rows of `control`."""

from __future__ import annotations

import json
from datetime import datetime

from jpixd.model import SendingState
from jpixd.store.base import to_db
from jpixd.store.control import ControlQueries
from jpixd.store.pg.base import SENDING, Conn, PgBase, notify, q

SENDING_KEY = "sending"
MODE_KEY = "mode"
VERSION_KEY = "subscribers_version"

PUT = ("INSERT INTO control (key, value, updated_at) VALUES (?, ?::jsonb, ?) "
       "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
       "updated_at = excluded.updated_at")


async def bump_subscribers_version(conn: Conn, now: datetime) -> None:
    """As on SQLite: every host's cached audience is stale once this moves."""
    await conn.execute(q(
        "INSERT INTO control (key, value, updated_at) VALUES (?, '1'::jsonb, ?) "
        "ON CONFLICT (key) DO UPDATE SET "
        "value = to_jsonb((control.value #>> '{}')::bigint + 1), "
        "updated_at = excluded.updated_at"), VERSION_KEY, now)


async def log_change(conn: Conn, subscriber_id: int, actor: str, action: str, detail: str,
                     now: datetime) -> None:
    await conn.execute(q("INSERT INTO subscriber_changes (subscriber_id, at, actor, action, "
                         "detail) VALUES (?, ?, ?, ?, ?)"),
                       subscriber_id, now, actor, action, detail[:2000])


class PgControlStore(ControlQueries, PgBase):
    async def set_sending(self, *, paused: bool, reason: str | None, actor: str,
                          now: datetime) -> SendingState:
        """Pause or resume sending for every host. A resume restarts the guard's window."""
        async with self._tx() as conn:
            # The row locked, so two hosts' pause and resume apply one after the other.
            row = await conn.fetchrow(q("SELECT value FROM control WHERE key = ? FOR UPDATE"),
                                      SENDING_KEY)
            old = json.loads(row["value"]) if row else {}
            window_start = old.get("window_start")
            if not paused and old.get("paused"):
                window_start = to_db(now)
            value = {"paused": paused, "reason": reason, "actor": actor, "since": to_db(now),
                     "window_start": window_start}
            await conn.execute(q(PUT), SENDING_KEY, json.dumps(value), now)
            await notify(conn, SENDING)  # every host stops or starts at once
        return await self.sending_state()
