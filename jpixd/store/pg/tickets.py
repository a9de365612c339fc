"""PostgreSQL: Backlog cases and the comments owed to them. One open case per address
is the partial unique index's rule as well as the code's: two hosts filing a bounce for
the same address at once end with one case and one comment, not an error."""

from __future__ import annotations

from datetime import datetime, tzinfo

from jpixd.backlog import cases
from jpixd.bounces.parse import MailEvent
from jpixd.store.base import to_db, where_equal
from jpixd.store.pg.base import Conn, PgBase, q
from jpixd.store.tickets import OPEN_CASES, Ticket, TicketComment, _ticket, open_case


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


class PgTicketStore(PgBase):
    async def request_guard_ticket(self, *, reason: str, paused_at: datetime,
                                   now: datetime) -> bool:
        marker = cases.new_marker()
        return await self._write(
            "INSERT INTO tickets (case_key, kind, marker, state, summary, description, "
            "priority, last_event_at, created_at, updated_at) VALUES (?, 'guard', ?, "
            "'intent', ?, ?, 'high', ?, ?, ?) ON CONFLICT (case_key) DO NOTHING",
            (f"guard:{to_db(paused_at)}", marker, cases.guard_summary(),
             cases.guard_description(reason, paused_at, marker, self.tz), paused_at,
             now, now)) > 0

    async def tickets_in(self, *states: str) -> list[Ticket]:
        rows = await self._all("SELECT * FROM tickets WHERE state = ANY(?::text[]) ORDER BY id",
                               (list(states),))
        return [_ticket(r) for r in rows]

    async def tickets_to_create(self, now: datetime) -> list[Ticket]:
        rows = await self._all("SELECT * FROM tickets WHERE state = 'intent' AND "
                               "(next_try_at IS NULL OR next_try_at <= ?) ORDER BY id", (now,))
        return [_ticket(r) for r in rows]

    async def open_cases(self) -> list[tuple[Ticket, cases.CaseFacts]]:
        return [open_case(r) for r in await self._all(OPEN_CASES)]

    async def ticket_attempt(self, ticket_id: int, now: datetime) -> None:
        await self._write("UPDATE tickets SET attempted_at = ?, updated_at = ? WHERE id = ?",
                          (now, now, ticket_id))

    async def ticket_opened(self, ticket_id: int, issue_id: int, issue_key: str,
                            now: datetime) -> None:
        await self._write(
            "UPDATE tickets SET state = 'open', issue_id = ?, issue_key = ?, opened_at = ?, "
            "attempted_at = NULL, last_error = NULL, tries = 0, next_try_at = NULL, "
            "updated_at = ? WHERE id = ? AND state = 'intent'",
            (issue_id, issue_key, now, now, ticket_id))

    async def ticket_refused(self, ticket_id: int, error: str, retry_at: datetime,
                             now: datetime) -> None:
        await self._write("UPDATE tickets SET last_error = ?, tries = tries + 1, "
                          "next_try_at = ?, attempted_at = NULL, updated_at = ? WHERE id = ?",
                          (error, retry_at, now, ticket_id))

    async def begin_close(self, ticket_id: int, reason: str, now: datetime) -> None:
        await self._write("UPDATE tickets SET state = 'closing', close_reason = ?, "
                          "attempted_at = NULL, updated_at = ? WHERE id = ? AND state = 'open'",
                          (reason, now, ticket_id))

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

    async def comments_to_post(self) -> list[TicketComment]:
        rows = await self._all(
            "SELECT c.id, c.ticket_id, t.issue_id, c.content, c.marker, c.attempted_at "
            "FROM ticket_comments c JOIN tickets t ON t.id = c.ticket_id "
            "WHERE c.posted_at IS NULL AND c.dropped_at IS NULL AND t.state = 'open' "
            "ORDER BY c.id")
        return [TicketComment(id=r["id"], ticket_id=r["ticket_id"], issue_id=r["issue_id"],
                              content=r["content"], marker=r["marker"],
                              attempted_at=r["attempted_at"]) for r in rows]

    async def comment_attempt(self, comment_id: int, marker: str, now: datetime) -> None:
        await self._write("UPDATE ticket_comments SET attempted_at = ?, marker = ? "
                          "WHERE id = ?", (now, marker, comment_id))

    async def comment_posted(self, comment_id: int, now: datetime) -> None:
        await self._write("UPDATE ticket_comments SET posted_at = ? WHERE id = ?",
                          (now, comment_id))

    async def comment_dropped(self, comment_id: int, now: datetime) -> None:
        await self._write("UPDATE ticket_comments SET dropped_at = ? WHERE id = ?",
                          (now, comment_id))

    async def ticket_counts(self) -> dict[str, int]:
        rows = await self._all("SELECT state, COUNT(*) AS n FROM tickets GROUP BY state")
        counts = {s: 0 for s in ("intent", "open", "closing", "closed", "gone")}
        counts.update({r["state"]: int(r["n"]) for r in rows})
        pending = await self._one("SELECT COUNT(*) AS n FROM ticket_comments c JOIN tickets t "
                                  "ON t.id = c.ticket_id WHERE c.posted_at IS NULL AND "
                                  "c.dropped_at IS NULL")
        counts["comments_pending"] = int(pending["n"]) if pending else 0
        return counts

    async def list_tickets(self, *, state: str | None = None, kind: str | None = None,
                           email: str | None = None, limit: int = 100,
                           offset: int = 0) -> tuple[list[Ticket], int]:
        where, params = where_equal(("state", state), ("kind", kind), ("email", email))
        rows, total = await self._page("tickets", where, params, "id DESC", limit, offset)
        return [_ticket(r) for r in rows], total
