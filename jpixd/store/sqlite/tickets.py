"""SQLite: a bounce's Backlog case filed inside the bounce's own transaction, and the
tickets' writes."""

from __future__ import annotations

import sqlite3
from datetime import datetime, tzinfo

from jpixd.backlog import cases
from jpixd.bounces.parse import MailEvent
from jpixd.store.base import to_db
from jpixd.store.sqlite.base import SqliteBase
from jpixd.store.tickets import TicketQueries


def file_bounce(db: sqlite3.Connection, e: MailEvent, event_id: int | None,
                delivery_id: int | None, now: datetime, tz: tzinfo) -> None:
    """Inside the bounce's own transaction (on the database thread): open a case for the
    address, or, when one is open already, queue a comment on it."""
    notice = db.execute("SELECT n.id, n.title FROM deliveries d JOIN notices n "
                        "ON n.id = d.notice_id WHERE d.id = ?",
                        (delivery_id,)).fetchone() if delivery_id is not None else None
    facts = cases.BounceFacts(
        email=e.recipient, subtype=e.subtype, diagnostic=e.diagnostic,
        occurred_at=e.occurred_at, ses_message_id=e.ses_message_id, delivery_id=delivery_id,
        notice_id=notice["id"] if notice else None,
        notice_title=notice["title"] if notice else None, tz=tz)
    t, at = to_db(now), to_db(e.occurred_at)
    current = db.execute("SELECT id FROM tickets WHERE email = ? AND kind = 'bounce' "
                         "AND state IN ('intent', 'open')", (e.recipient,)).fetchone()
    if current is not None:
        db.execute("INSERT INTO ticket_comments (ticket_id, content, created_at) "
                   "VALUES (?, ?, ?)", (current["id"], cases.repeat_comment(facts), t))
        db.execute("UPDATE tickets SET last_event_at = MAX(COALESCE(last_event_at, ?), ?), "
                   "updated_at = ? WHERE id = ?", (at, at, t, current["id"]))
        return
    marker = cases.new_marker()
    db.execute(
        "INSERT INTO tickets (case_key, kind, email, marker, state, summary, description, "
        "priority, event_id, last_event_at, created_at, updated_at) "
        "VALUES (?, 'bounce', ?, ?, 'intent', ?, ?, 'normal', ?, ?, ?, ?)",
        (f"bounce:{e.recipient}:{marker}", e.recipient, marker, cases.bounce_summary(facts),
         cases.bounce_description(facts, marker), event_id, at, t, t))


class TicketStore(TicketQueries, SqliteBase):
    """Backlog cases on SQLite: all in TicketQueries, but the filing of a bounce's case,
    which runs inside the bounce's own transaction (`file_bounce`)."""
