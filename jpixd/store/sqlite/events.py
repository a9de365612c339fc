"""SQLite: an SQS message's events recorded in one trip to the database thread, with the
suppressions and Backlog cases they call for."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo

from jpixd.bounces.parse import MailEvent
from jpixd.bounces.rules import Decision, is_soft_bounce
from jpixd.records import EventOutcome
from jpixd.store.base import to_db
from jpixd.store.events import SELF_MAIL_BY_SES_ID, Decider, EventQueries
from jpixd.store.sqlite.base import SqliteBase
from jpixd.store.sqlite.subscribers import bump_version_sync, log_change_sync
from jpixd.store.sqlite.tickets import file_bounce


def _record(db: sqlite3.Connection, e: MailEvent, now: datetime, decide: Decider,
            soft_window: timedelta, file_cases: bool, tz: tzinfo) -> EventOutcome:
    row = db.execute("SELECT id FROM deliveries WHERE ses_message_id = ? LIMIT 1",
                     (e.ses_message_id,)).fetchone() if e.ses_message_id else None
    delivery_id = int(row["id"]) if row else None
    own = db.execute(SELF_MAIL_BY_SES_ID, (e.ses_message_id,)).fetchone() \
        if e.ses_message_id and delivery_id is None else None
    self_mail_id = int(own["id"]) if own else None
    soft_bounce = is_soft_bounce(e)
    cur = db.execute(
        "INSERT INTO mail_events (event_key, type, subtype, recipient, ses_message_id, "
        "delivery_id, diagnostic, occurred_at, received_at, raw, soft, self_mail_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_key) DO NOTHING",
        (e.key, e.type, e.subtype, e.recipient, e.ses_message_id, delivery_id,
         e.diagnostic, to_db(e.occurred_at), to_db(now), e.raw, int(soft_bounce),
         self_mail_id))
    if cur.rowcount == 0:
        return EventOutcome(e, new=False)
    event_id = cur.lastrowid
    soft = 0
    if soft_bounce:
        counted = db.execute(
            "SELECT COUNT(*) AS n FROM mail_events WHERE recipient = ? AND soft = 1 "
            "AND occurred_at >= ?",
            (e.recipient, to_db(e.occurred_at - soft_window))).fetchone()
        soft = int(counted["n"]) if counted else 1
    decision = decide(e, soft, self_mail_id is not None)
    db.execute("UPDATE mail_events SET counted_in_rate = ? WHERE id = ?",
               (int(decision.counted), event_id))
    if decision.suppress:
        _suppress(db, e, event_id, decision, now)
    if e.type == "Bounce" and file_cases and not decision.self_service:
        # The operator hears of every bounced address through Backlog: the case is
        # recorded with the bounce, so the reconciler cannot miss it.
        file_bounce(db, e, event_id, delivery_id, now, tz)
    return EventOutcome(e, new=True, delivery_id=delivery_id,
                        suppressed=decision.suppress, reason=decision.reason)


def _suppress(db: sqlite3.Connection, e: MailEvent, event_id: int | None,
              decision: Decision, now: datetime) -> None:
    t, at = to_db(now), to_db(e.occurred_at)
    db.execute(
        "INSERT INTO suppressions (email, reason, first_event_at, last_event_at, event_id, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO UPDATE SET "
        "reason = excluded.reason, last_event_at = excluded.last_event_at, "
        "event_id = excluded.event_id, lifted_at = NULL, lifted_by = NULL, "
        "first_event_at = CASE WHEN suppressions.lifted_at IS NULL "
        "THEN suppressions.first_event_at ELSE excluded.first_event_at END",
        (e.recipient, decision.reason or e.type, at, at, event_id, t))
    # Mail not yet sent to the address will not be: say so in the outbox now.
    db.execute(
        "UPDATE deliveries SET state = 'suppressed', reason = ?, updated_at = ? "
        "WHERE email = ? AND state IN ('pending', 'retry')",
        (f"address suppressed: {decision.reason}", t, e.recipient))
    status = "unsubscribed" if decision.unsubscribe else "suppressed"
    changed = [int(r["id"]) for r in db.execute(
        "SELECT id FROM subscribers WHERE email = ? AND deleted_at IS NULL "
        "AND status = 'active'", (e.recipient,))]
    if changed:
        db.execute("UPDATE subscribers SET status = ?, updated_at = ?, signed_up_at = NULL "
                   "WHERE id = ?", (status, t, changed[0]))
        # Who changed the subscriber and why, as for every other change to one.
        log_change_sync(db, changed[0], "bounces", status,
                        f"{e.type} {e.subtype or ''}: {decision.reason or ''}".strip(), now)
        bump_version_sync(db, now)


class EventStore(EventQueries, SqliteBase):
    async def record_events(self, events: Sequence[MailEvent], now: datetime, *,
                            decide: Decider, soft_window: timedelta,
                            file_cases: bool = True) -> list[EventOutcome]:
        """Record the events; with `file_cases`, each bounce also files (or comments on)
        its address's Backlog case in the same transaction: one trip to the database
        thread for the whole message."""
        tz = self.tz

        def body(db: sqlite3.Connection) -> list[EventOutcome]:
            return [_record(db, e, now, decide, soft_window, file_cases, tz) for e in events]

        return await self._tx_sync(body)

    async def record_event_batches(
            self, batches: Sequence[Sequence[MailEvent]], now: datetime, *, decide: Decider,
            soft_window: timedelta, file_cases: bool = True
    ) -> list[list[EventOutcome] | Exception]:
        """Several SQS messages' events in one transaction, each message under a
        savepoint: a message whose recording raises is rolled back alone and its
        exception returned in its place (the caller quarantines it); the others commit."""
        tz = self.tz

        def body(db: sqlite3.Connection) -> list[list[EventOutcome] | Exception]:
            out: list[list[EventOutcome] | Exception] = []
            for i, events in enumerate(batches):
                db.execute(f"SAVEPOINT message_{i}")
                try:
                    out.append([_record(db, e, now, decide, soft_window, file_cases, tz)
                                for e in events])
                except Exception as exc:  # this message, not the receive
                    db.execute(f"ROLLBACK TO message_{i}")
                    out.append(exc)
                db.execute(f"RELEASE message_{i}")
            return out

        return await self._tx_sync(body)

    async def hourly_activity(self, since: datetime) -> dict[str, dict[str, int]]:
        """Per UTC hour ("2026-11-29T12") since `since`: mails sent, bounces, complaints
        (the console's chart)."""
        s = to_db(since)
        out: dict[str, dict[str, int]] = {}
        for r in await self._all("SELECT substr(sent_at, 1, 13) AS h, COUNT(*) AS n FROM "
                                 "deliveries WHERE state = 'sent' AND sent_at >= ? "
                                 "GROUP BY h", (s,)):
            out.setdefault(r["h"], {})["sent"] = int(r["n"])
        for r in await self._all("SELECT substr(occurred_at, 1, 13) AS h, type, COUNT(*) AS n "
                                 "FROM mail_events WHERE type IN ('Bounce', 'Complaint') "
                                 "AND occurred_at >= ? GROUP BY h, type", (s,)):
            out.setdefault(r["h"], {})[str(r["type"]).lower()] = int(r["n"])
        return out
