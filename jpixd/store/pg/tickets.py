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
    opened = await conn.fetchval(q(
        "INSERT INTO tickets (case_key, kind, email, marker, state, summary, description, "
        "priority, event_id, last_event_at, created_at, updated_at) "
        "VALUES (?, 'bounce', ?, ?, 'intent', ?, ?, 'normal', ?, ?, ?, ?) "
        "ON CONFLICT (email) WHERE kind = 'bounce' AND state IN ('intent', 'open') "
        "DO NOTHING RETURNING id"),
        f"bounce:{e.recipient}:{marker}", e.recipient, marker,
        _text(cases.bounce_summary(facts)), _text(cases.bounce_description(facts, marker)),
        event_id, e.occurred_at, now, now)
    if opened is not None:
        return
    current = await conn.fetchval(q(
        "SELECT id FROM tickets WHERE email = ? AND kind = 'bounce' "
        "AND state IN ('intent', 'open') FOR UPDATE"), e.recipient)
    await conn.execute(q("INSERT INTO ticket_comments (ticket_id, content, created_at) "
                         "VALUES (?, ?, ?)"), current, _text(cases.repeat_comment(facts)), now)
    await conn.execute(q("UPDATE tickets SET last_event_at = GREATEST(COALESCE(last_event_at, "
                         "?), ?), updated_at = ? WHERE id = ?"),
                       e.occurred_at, e.occurred_at, now, current)


def _text(value: str) -> str:
    return value.replace("\0", "\\x00")


async def queue_lift_comment(conn: Conn, email: str, by: str, now: datetime) -> None:
    await conn.execute(q(
        "INSERT INTO ticket_comments (ticket_id, content, created_at) SELECT id, ?, ? "
        "FROM tickets WHERE email = ? AND kind = 'bounce' AND state IN ('intent', 'open')"),
        cases.lifted_comment(by), now, email)


class PgTicketStore(TicketQueries, PgBase):
    async def ticket_ended(self, ticket_id: int, state: str, now: datetime, *,
                           reason: str | None = None, issue_id: int | None = None,
                           issue_key: str | None = None) -> None:
        if state not in ("closed", "gone"):
            raise ValueError(f"not an end state: {state}")
        async with self._tx() as conn:
            await conn.execute(q(
                "UPDATE tickets SET state = ?, closed_at = ?, "
                "close_reason = COALESCE(?, close_reason), issue_id = COALESCE(?, issue_id), "
                "issue_key = COALESCE(?, issue_key), updated_at = ? WHERE id = ?"),
                state, now, reason, issue_id, issue_key, now, ticket_id)
            await conn.execute(q("UPDATE ticket_comments SET dropped_at = ? WHERE "
                                 "ticket_id = ? AND posted_at IS NULL AND dropped_at IS NULL"),
                               now, ticket_id)

