"""PostgreSQL: Backlog cases and the comments owed to them. One open case per address
is the partial unique index's rule as well as the code's: two hosts filing a bounce for
the same address at once end with one case and one comment, not an error."""

from __future__ import annotations

from datetime import datetime, tzinfo

from jpixd.backlog import cases
from jpixd.bounces.parse import MailEvent
from jpixd.store.pg.base import Conn, PgBase, q
from jpixd.store.tickets import TicketQueries


async def file_bounce(conn: Conn, e: MailEvent, event_id: int | None,
                      delivery_id: int | None, now: datetime, tz: tzinfo) -> None:
    notice = await conn.fetchrow(q(
        "SELECT n.id, n.title FROM deliveries d JOIN notices n ON n.id = d.notice_id "
        "WHERE d.id = ?"), delivery_id) if delivery_id is not None else None
    facts = cases.BounceFacts(
        email=e.recipient, subtype=e.subtype, diagnostic=e.diagnostic,
        occurred_at=e.occurred_at, ses_message_id=e.ses_message_id, delivery_id=delivery_id,
        notice_id=notice["id"] if notice else None,
        notice_title=notice["title"] if notice else None, tz=tz)
    marker = cases.new_marker()
    text = PgBase.storable
    opened = await conn.fetchval(q(
        "INSERT INTO tickets (case_key, kind, email, marker, state, summary, description, "
        "priority, event_id, last_event_at, created_at, updated_at) "
        "VALUES (?, 'bounce', ?, ?, 'intent', ?, ?, 'normal', ?, ?, ?, ?) "
        "ON CONFLICT (email) WHERE kind = 'bounce' AND state IN ('intent', 'open') "
        "DO NOTHING RETURNING id"),
        f"bounce:{e.recipient}:{marker}", e.recipient, marker,
        text(cases.bounce_summary(facts)), text(cases.bounce_description(facts, marker)),
        event_id, e.occurred_at, now, now)
    if opened is not None:
        return
    current = await conn.fetchval(q(
        "SELECT id FROM tickets WHERE email = ? AND kind = 'bounce' "
        "AND state IN ('intent', 'open') FOR UPDATE"), e.recipient)
    await conn.execute(q("INSERT INTO ticket_comments (ticket_id, content, created_at) "
                         "VALUES (?, ?, ?)"), current, text(cases.repeat_comment(facts)), now)
    await conn.execute(q("UPDATE tickets SET last_event_at = GREATEST(COALESCE(last_event_at, "
                         "?), ?), updated_at = ? WHERE id = ?"),
                       e.occurred_at, e.occurred_at, now, current)


class PgTicketStore(TicketQueries, PgBase):
    """Backlog cases on PostgreSQL: all in TicketQueries, but the filing of a bounce's
    case, which runs inside the bounce's own transaction (`file_bounce`)."""
