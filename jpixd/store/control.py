"""Process-wide control state: the sending pause and the guard's window start (one row of
`control`, the same SQL on both databases)."""

from __future__ import annotations

import json
from datetime import datetime

from jpixd.model import SendingState
from jpixd.store.base import SENDING, Queries, from_db, to_db

_SENDING_KEY = "sending"

# A `control` row written whole (key, JSON value, time).
PUT = ("INSERT INTO control (key, value, updated_at) VALUES (?, ?, ?) "
       "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
       "updated_at = excluded.updated_at")


def sending_from(value: str | None) -> SendingState:
    """The stored pause (JSON, both stores), or "sending" when none was ever stored."""
    if value is None:
        return SendingState(paused=False)
    data = json.loads(value)
    return SendingState(paused=bool(data.get("paused")), reason=data.get("reason"),
                        actor=data.get("actor"), since=from_db(data.get("since")),
                        window_start=from_db(data.get("window_start")))


class ControlStore(Queries):
    async def sending_state(self) -> SendingState:
        row = await self._one("SELECT value FROM control WHERE key = ?", (_SENDING_KEY,))
        return sending_from(row["value"] if row else None)

    async def set_sending(self, *, paused: bool, reason: str | None, actor: str,
                          now: datetime) -> SendingState:
        """Pause or resume sending (on every host: they hear of it at the commit). A
        resume restarts the guard's window at `now`."""
        async with self.transaction() as tx:
            # The row locked, so two hosts' pause and resume apply one after the other.
            row = await tx.one("SELECT value FROM control WHERE key = ?" + self.for_update,
                               (_SENDING_KEY,))
            old = json.loads(row["value"]) if row else {}
            window_start = old.get("window_start")
            if not paused and old.get("paused"):
                window_start = to_db(now)
            value = {"paused": paused, "reason": reason, "actor": actor, "since": to_db(now),
                     "window_start": window_start}
            await tx.execute(PUT, (_SENDING_KEY, json.dumps(value), now))
            await tx.notify(SENDING)
        return await self.sending_state()

    async def end_console_session(self, session: str, expires_at: datetime) -> None:
        """A console session logged out: refused from now on, on every host, until it
        would have expired anyway (then pruned)."""
        await self._write("INSERT INTO console_logouts (session, expires_at) VALUES (?, ?) "
                          "ON CONFLICT (session) DO NOTHING", (session, expires_at))

    async def console_session_ended(self, session: str) -> bool:
        row = await self._one("SELECT 1 AS x FROM console_logouts WHERE session = ?",
                              (session,))
        return row is not None
