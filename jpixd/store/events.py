"""SES events, suppressions and the guard's counts.

An SQS message's events are recorded in one transaction, before the message is deleted:
a crash in between redelivers the message and its events' keys are already there, so it
changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from jpixd.bounces.parse import MailEvent
from jpixd.bounces.rules import Decision
from jpixd.store.base import Queries, Row, as_text, from_db, where_equal
from jpixd.store.subscribers import log_change
from jpixd.store.tickets import queue_lift_comment

# (event, soft bounces of its address within the window, this one included, whether it is
# of a self-service mail) → Decision
Decider = Callable[[MailEvent, int, bool], Decision]
# The mail an SES message id names, when it is no delivery: a self-service mail.
SELF_MAIL_BY_SES_ID = "SELECT id FROM self_mails WHERE ses_message_id = ? LIMIT 1"


class EventQueries(Queries):
    """The guard's counts and the events' and suppressions' reads, the same SQL on both
    databases."""

    async def lift_suppression(self, email: str, *, by: str, now: datetime) -> bool:
        """Lift it (the history stays); a suppressed subscriber becomes active again."""
        async with self.transaction() as tx:
            if await tx.execute("UPDATE suppressions SET lifted_at = ?, lifted_by = ? "
                                "WHERE email = ? AND lifted_at IS NULL", (now, by, email)) == 0:
                return False
            row = await tx.one("SELECT id FROM subscribers WHERE email = ? AND "
                               "deleted_at IS NULL AND status = 'suppressed'" + self.for_update,
                               (email,))
            if row is not None:
                await tx.execute("UPDATE subscribers SET status = 'active', updated_at = ? "
                                 "WHERE id = ?", (now, row["id"]))
                await log_change(tx, int(row["id"]), by, "updated",
                                 "status: suppressed → active (suppression lifted)", now)
                await self._bump_subscribers(tx, now)
            # Said on the address's open Backlog issue too (the reconciler posts it).
            await queue_lift_comment(tx, email, by, now)
        return True

    async def guard_counts(self, since: datetime) -> tuple[int, int, int]:
        """(mails sent, notice mail's counted hard bounces, its counted complaints) since
        `since`. Every send counts, self-service mail's too (issue 24: the account sent
        them all); self-service mail's own bounces are judged by its own limit."""
        sent = await self._one(
            "SELECT (SELECT COUNT(*) FROM deliveries WHERE state = 'sent' AND sent_at >= ?) "
            "+ (SELECT COUNT(*) FROM self_mails WHERE state = 'sent' AND sent_at >= ?) AS n",
            (since, since))
        # A flag: 1/0 on SQLite, a boolean on PostgreSQL, true or false on both.
        # Notice mail's own: self-service mail's events are judged by its own limit.
        rows = await self._all("SELECT type, COUNT(*) AS n FROM mail_events WHERE "
                               "counted_in_rate AND self_mail_id IS NULL "
                               "AND occurred_at >= ? GROUP BY type", (since,))
        by = {r["type"]: int(r["n"]) for r in rows}
        return (int(sent["n"]) if sent else 0, by.get("Bounce", 0), by.get("Complaint", 0))

    async def suppressed_count(self) -> int:
        row = await self._one("SELECT COUNT(*) AS n FROM suppressions WHERE lifted_at IS NULL")
        return int(row["n"]) if row else 0

    async def list_suppressions(self, *, limit: int = 100,
                                offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        rows, total = await self._page("suppressions", ["lifted_at IS NULL"], [],
                                       "last_event_at DESC", limit, offset)
        return [_suppression(r) for r in rows], total

    async def list_events(self, *, type_: str | None = None, recipient: str | None = None,
                          limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        where, params = where_equal(("type", type_), ("recipient", recipient))
        rows, total = await self._page("mail_events", where, params, "occurred_at DESC, id DESC",
                                       limit, offset)
        return [event_json(r) for r in rows], total


def event_json(r: Row) -> dict[str, Any]:
    return {"id": r["id"], "type": r["type"], "subtype": r["subtype"],
            "recipient": r["recipient"], "ses_message_id": r["ses_message_id"],
            "delivery_id": r["delivery_id"], "counted_in_rate": bool(r["counted_in_rate"]),
            "self_mail_id": r["self_mail_id"],
            "diagnostic": r["diagnostic"], "occurred_at": as_text(r["occurred_at"]),
            "received_at": as_text(r["received_at"])}


def _suppression(r: Row) -> dict[str, Any]:
    first, last = from_db(r["first_event_at"]), from_db(r["last_event_at"])
    return {"email": r["email"], "reason": r["reason"],
            "first_event_at": first.isoformat() if first else None,
            "last_event_at": last.isoformat() if last else None,
            "created_at": as_text(r["created_at"])}
