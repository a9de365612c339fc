"""SES events, suppressions and the guard's counts.

An SQS message's events are recorded in one transaction, before the message is deleted:
a crash in between redelivers the message and its events' keys are already there, so it
changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any, Protocol

from jpixd.bounces.parse import MailEvent
from jpixd.bounces.rules import Decision, is_soft_bounce
from jpixd.records import EventOutcome
from jpixd.store.base import (
    SELF_SERVICE,
    SUBSCRIBERS_VERSION,
    Plan,
    Queries,
    Row,
    Step,
    as_text,
    from_db,
    where_equal,
)
from jpixd.store.subscribers import LOG_CHANGE, log_change
from jpixd.store.tickets import file_bounce_plan, queue_lift_comment

# (event, soft bounces of its address within the window, this one included, whether it is
# of a self-service mail) → Decision
Decider = Callable[[MailEvent, int, bool], Decision]
# The mail an SES message id names, and whether it was self-service mail.
_MAIL_BY_SES_ID = (f"SELECT id, {SELF_SERVICE} AS self_service FROM deliveries "
                   "WHERE ses_message_id = ? LIMIT 1")


class _Dialect(Protocol):
    """What the plans below need of the database they run on."""

    greatest: str
    for_update: str
    bump_version_sql: str

    @staticmethod
    def storable(text: str) -> str: ...


def record_plan(e: MailEvent, now: datetime, decide: Decider, soft_window: timedelta,
                file_cases: bool, tz: tzinfo, db: _Dialect) -> Plan[EventOutcome]:
    """One SES event, written once for both databases: the delivery or self-service mail
    it is about, the event (once: its key), the soft bounces of its address, the rules'
    decision, a suppression and a Backlog case if they call for them."""
    delivery_id: int | None = None
    self_mail_id: int | None = None
    if e.ses_message_id:
        rows = yield Step(_MAIL_BY_SES_ID, (e.ses_message_id,))
        delivery_id = int(rows[0]["id"]) if rows else None
        # An event of self-service mail is told apart by `self_mail_id` (its delivery).
        self_mail_id = delivery_id if rows and rows[0]["self_service"] else None
    soft_bounce = is_soft_bounce(e)
    inserted = yield Step(
        "INSERT INTO mail_events (event_key, type, subtype, recipient, ses_message_id, "
        "delivery_id, diagnostic, occurred_at, received_at, raw, soft, self_mail_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_key) DO NOTHING "
        "RETURNING id",
        (e.key, e.type, e.subtype, e.recipient, e.ses_message_id, delivery_id,
         db.storable(e.diagnostic) if e.diagnostic else e.diagnostic, e.occurred_at, now,
         db.storable(e.raw), soft_bounce, self_mail_id))
    if not inserted:
        return EventOutcome(e, new=False)  # seen before: a redelivered notification
    event_id = int(inserted[0]["id"])
    soft = 0
    if soft_bounce:
        counted = yield Step("SELECT COUNT(*) AS n FROM mail_events WHERE recipient = ? "
                             "AND soft AND occurred_at >= ?",
                             (e.recipient, e.occurred_at - soft_window))
        soft = int(counted[0]["n"])
    decision = decide(e, soft, self_mail_id is not None)
    yield Step("UPDATE mail_events SET counted_in_rate = ? WHERE id = ?",
               (decision.counted, event_id), rows=False)
    if decision.suppress:
        yield from _suppress_plan(e, event_id, decision, now, db)
    if e.type == "Bounce" and file_cases and not decision.self_service:
        # The operator hears of every bounced address through Backlog: the case is
        # recorded with the bounce, so the reconciler cannot miss it.
        yield from file_bounce_plan(e, event_id, delivery_id, now, tz, storable=db.storable,
                                    greatest=db.greatest, for_update=db.for_update)
    return EventOutcome(e, new=True, delivery_id=delivery_id, suppressed=decision.suppress,
                        reason=decision.reason)


def _suppress_plan(e: MailEvent, event_id: int, decision: Decision, now: datetime,
                   db: _Dialect) -> Plan[None]:
    yield Step(
        "INSERT INTO suppressions (email, reason, first_event_at, last_event_at, event_id, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO UPDATE SET "
        "reason = excluded.reason, last_event_at = excluded.last_event_at, "
        "event_id = excluded.event_id, lifted_at = NULL, lifted_by = NULL, "
        "first_event_at = CASE WHEN suppressions.lifted_at IS NULL "
        "THEN suppressions.first_event_at ELSE excluded.first_event_at END",
        (e.recipient, decision.reason or e.type, e.occurred_at, e.occurred_at, event_id, now),
        rows=False)
    # Mail not yet sent to the address will not be: say so in the outbox now.
    yield Step("UPDATE deliveries SET state = 'suppressed', reason = ?, updated_at = ? "
               "WHERE email = ? AND state IN ('pending', 'retry')",
               (f"address suppressed: {decision.reason}", now, e.recipient), rows=False)
    status = "unsubscribed" if decision.unsubscribe else "suppressed"
    changed = yield Step(
        "UPDATE subscribers SET status = ?, updated_at = ?, signed_up_at = NULL "
        "WHERE id = (SELECT id FROM subscribers WHERE email = ? AND deleted_at IS NULL "
        "AND status = 'active' LIMIT 1) RETURNING id", (status, now, e.recipient))
    if changed:
        # Who changed the subscriber and why, as for every other change to one.
        detail = f"{e.type} {e.subtype or ''}: {decision.reason or ''}".strip()
        yield Step(LOG_CHANGE, (int(changed[0]["id"]), now, "bounces", status, detail[:2000]),
                   rows=False)
        yield Step(db.bump_version_sql, (SUBSCRIBERS_VERSION, now), rows=False)


def _batches_plan(batches: Sequence[Sequence[MailEvent]], now: datetime, decide: Decider,
                  soft_window: timedelta, file_cases: bool, tz: tzinfo, db: _Dialect
                  ) -> Plan[list[list[EventOutcome] | Exception]]:
    """Several SQS messages' events, each message under a savepoint: one whose recording
    raises is rolled back alone and its exception returned in its place."""
    out: list[list[EventOutcome] | Exception] = []
    for i, events in enumerate(batches):
        yield Step(f"SAVEPOINT message_{i}", rows=False)
        try:
            got = []
            for e in events:
                got.append((yield from record_plan(e, now, decide, soft_window, file_cases,
                                                   tz, db)))
            out.append(got)
        except Exception as exc:
            yield Step(f"ROLLBACK TO SAVEPOINT message_{i}", rows=False)
            out.append(exc)
        yield Step(f"RELEASE SAVEPOINT message_{i}", rows=False)
    return out


def _events_plan(events: Sequence[MailEvent], now: datetime, decide: Decider,
                 soft_window: timedelta, file_cases: bool, tz: tzinfo, db: _Dialect
                 ) -> Plan[list[EventOutcome]]:
    out = []
    for e in events:
        out.append((yield from record_plan(e, now, decide, soft_window, file_cases, tz, db)))
    return out


class EventQueries(Queries):
    """SES events recorded (`record_plan`), the guard's counts and the events' and
    suppressions' reads: the same SQL on both databases."""

    async def hourly_activity(self, since: datetime) -> dict[str, dict[str, int]]:
        """Per UTC hour ("2026-11-29T12") since `since`: mails sent, bounces, complaints
        (the console's chart)."""
        out: dict[str, dict[str, int]] = {}
        for r in await self._all(f"SELECT {self.hour_of('sent_at')} AS h, COUNT(*) AS n "
                                 "FROM deliveries WHERE state = 'sent' AND sent_at >= ? "
                                 "GROUP BY h", (since,)):
            out.setdefault(r["h"], {})["sent"] = int(r["n"])
        for r in await self._all(f"SELECT {self.hour_of('occurred_at')} AS h, type, "
                                 "COUNT(*) AS n FROM mail_events WHERE type IN ('Bounce', "
                                 "'Complaint') AND occurred_at >= ? GROUP BY h, type", (since,)):
            out.setdefault(r["h"], {})[str(r["type"]).lower()] = int(r["n"])
        return out

    async def record_events(self, events: Sequence[MailEvent], now: datetime, *,
                            decide: Decider, soft_window: timedelta,
                            file_cases: bool = True) -> list[EventOutcome]:
        """Record an SQS message's events in one transaction; with `file_cases`, each
        bounce also files (or comments on) its address's Backlog case in it."""
        return await self.run_plan(_events_plan(events, now, decide, soft_window,
                                                file_cases, self.tz, self))

    async def record_event_batches(
            self, batches: Sequence[Sequence[MailEvent]], now: datetime, *, decide: Decider,
            soft_window: timedelta, file_cases: bool = True
    ) -> list[list[EventOutcome] | Exception]:
        """Several SQS messages' events in one transaction, each message under a
        savepoint: a message whose recording raises is rolled back alone and its
        exception returned in its place (the caller quarantines it); the others commit."""
        return await self.run_plan(_batches_plan(batches, now, decide, soft_window,
                                                 file_cases, self.tz, self))

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
            "SELECT COUNT(*) AS n FROM deliveries WHERE state = 'sent' AND sent_at >= ?",
            (since,))
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
