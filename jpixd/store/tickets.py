"""Backlog cases: the `tickets` rows and the `ticket_comments` outbox.

Every case is recorded here before Backlog is called, in the transaction of whatever
caused it (a bounce, a guard pause, a lifted suppression), so no case is lost while
Backlog is slow or down; the reconciler works through these rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo

from jpixd.backlog import cases
from jpixd.bounces.parse import MailEvent
from jpixd.records import Ticket, TicketComment
from jpixd.store.base import (
    Plan,
    Queries,
    Row,
    Step,
    Tx,
    from_db,
    from_db_req,
    marks,
    to_db,
    where_equal,
)

OPEN_STATES = ("intent", "open", "closing")


def _ticket(r: Row) -> Ticket:
    return Ticket(id=r["id"], kind=r["kind"], email=r["email"], marker=r["marker"],
                  state=r["state"], issue_id=r["issue_id"], issue_key=r["issue_key"],
                  summary=r["summary"], description=r["description"], priority=r["priority"],
                  close_reason=r["close_reason"], attempted_at=from_db(r["attempted_at"]),
                  last_error=r["last_error"], tries=r["tries"],
                  next_try_at=from_db(r["next_try_at"]),
                  last_event_at=from_db(r["last_event_at"]),
                  created_at=from_db_req(r["created_at"]), opened_at=from_db(r["opened_at"]),
                  closed_at=from_db(r["closed_at"]))


# The query both stores use for open_cases: the case with what its close rule needs.
OPEN_CASES = (
    "SELECT t.*, EXISTS (SELECT 1 FROM subscribers s WHERE s.email = t.email AND "
    "s.deleted_at IS NULL) AS has_subscriber, sp.lifted_at AS lifted_at, "
    "(sp.email IS NOT NULL AND sp.lifted_at IS NULL) AS suppressed "
    "FROM tickets t LEFT JOIN suppressions sp ON sp.email = t.email "
    "WHERE t.state = 'open' ORDER BY t.id")


def open_case(r: Row) -> tuple[Ticket, cases.CaseFacts]:
    tk = _ticket(r)
    return tk, cases.CaseFacts(
        kind=tk.kind, created_at=tk.created_at,
        last_event_at=tk.last_event_at or tk.created_at,
        has_subscriber=bool(r["has_subscriber"]), suppressed=bool(r["suppressed"]),
        lifted_at=from_db(r["lifted_at"]))


def file_bounce_plan(e: MailEvent, event_id: int | None, delivery_id: int | None,
                     now: datetime, tz: tzinfo, *, storable: Callable[[str], str],
                     greatest: str, for_update: str) -> Plan[None]:
    """Inside the bounce's own transaction: open a case for the address or, when one is
    open already, queue a comment on it. One open case per address is the partial
    unique index's rule as well as this plan's: two hosts filing a bounce for the same
    address at once end with one case and one comment, not an error."""
    notice: list[Row] = []
    if delivery_id is not None:
        notice = yield Step("SELECT n.id, n.title FROM deliveries d JOIN notices n "
                            "ON n.id = d.notice_id WHERE d.id = ?", (delivery_id,))
    facts = cases.BounceFacts(
        email=e.recipient, subtype=e.subtype, diagnostic=e.diagnostic,
        occurred_at=e.occurred_at, ses_message_id=e.ses_message_id, delivery_id=delivery_id,
        notice_id=notice[0]["id"] if notice else None,
        notice_title=notice[0]["title"] if notice else None, tz=tz)
    marker = cases.new_marker()
    opened = yield Step(
        "INSERT INTO tickets (case_key, kind, email, marker, state, summary, description, "
        "priority, event_id, last_event_at, created_at, updated_at) "
        "VALUES (?, 'bounce', ?, ?, 'intent', ?, ?, 'normal', ?, ?, ?, ?) "
        "ON CONFLICT (email) WHERE kind = 'bounce' AND state IN ('intent', 'open') "
        "DO NOTHING RETURNING id",
        (f"bounce:{e.recipient}:{marker}", e.recipient, marker,
         storable(cases.bounce_summary(facts)),
         storable(cases.bounce_description(facts, marker)), event_id, e.occurred_at, now,
         now))
    if opened:
        return
    current = (yield Step("SELECT id FROM tickets WHERE email = ? AND kind = 'bounce' "
                          f"AND state IN ('intent', 'open'){for_update}", (e.recipient,)))
    ticket_id = current[0]["id"]
    yield Step("INSERT INTO ticket_comments (ticket_id, content, created_at) "
               "VALUES (?, ?, ?)", (ticket_id, storable(cases.repeat_comment(facts)), now),
               rows=False)
    yield Step(f"UPDATE tickets SET last_event_at = {greatest}(COALESCE(last_event_at, ?), "
               "?), updated_at = ? WHERE id = ?",
               (e.occurred_at, e.occurred_at, now, ticket_id), rows=False)


async def queue_lift_comment(tx: Tx, email: str, by: str, now: datetime) -> None:
    """Inside the lift's transaction: say so on the address's open issue."""
    await tx.execute(
        "INSERT INTO ticket_comments (ticket_id, content, created_at) SELECT id, ?, ? "
        "FROM tickets WHERE email = ? AND kind = 'bounce' AND state IN ('intent', 'open')",
        (cases.lifted_comment(by), now, email))


class TicketQueries(Queries):
    """The cases' reads and changes, the same SQL on both databases (filing a bounce's
    case is each store's own: it runs inside the bounce's transaction)."""

    async def ticket_ended(self, ticket_id: int, state: str, now: datetime, *,
                           reason: str | None = None, issue_id: int | None = None,
                           issue_key: str | None = None) -> None:
        """Closed (by us or by hand) or gone (deleted in Backlog): never touched again;
        comments still owed to it are dropped."""
        if state not in ("closed", "gone"):
            raise ValueError(f"not an end state: {state}")
        async with self.transaction() as tx:
            await tx.execute(
                "UPDATE tickets SET state = ?, closed_at = ?, "
                "close_reason = COALESCE(?, close_reason), issue_id = COALESCE(?, issue_id), "
                "issue_key = COALESCE(?, issue_key), updated_at = ? WHERE id = ?",
                (state, now, reason, issue_id, issue_key, now, ticket_id))
            await tx.execute("UPDATE ticket_comments SET dropped_at = ? WHERE ticket_id = ? "
                             "AND posted_at IS NULL AND dropped_at IS NULL", (now, ticket_id))

    async def request_guard_ticket(self, *, reason: str, paused_at: datetime,
                                   now: datetime) -> bool:
        """Ask for a High-priority issue about a guard pause, opened by the reconciler and
        closed by it on resume. One per pause; False if this pause has one already."""
        marker = cases.new_marker()
        return await self._write(
            "INSERT INTO tickets (case_key, kind, marker, state, summary, description, "
            "priority, last_event_at, created_at, updated_at) VALUES (?, 'guard', ?, "
            "'intent', ?, ?, 'high', ?, ?, ?) ON CONFLICT (case_key) DO NOTHING",
            (f"guard:{to_db(paused_at)}", marker, cases.guard_summary(),
             cases.guard_description(reason, paused_at, marker, self.tz), paused_at,
             now, now)) > 0

    async def tickets_in(self, *states: str) -> list[Ticket]:
        rows = await self._all(f"SELECT * FROM tickets WHERE state IN ({marks(states)}) "
                               "ORDER BY id", states)
        return [_ticket(r) for r in rows]

    async def tickets_to_create(self, now: datetime) -> list[Ticket]:
        rows = await self._all("SELECT * FROM tickets WHERE state = 'intent' AND "
                               "(next_try_at IS NULL OR next_try_at <= ?) ORDER BY id",
                               (now,))
        return [_ticket(r) for r in rows]

    async def open_cases(self) -> list[tuple[Ticket, cases.CaseFacts]]:
        """Open issues with what `cases.close_reason` needs to know about each."""
        rows = await self._all(OPEN_CASES)
        return [open_case(r) for r in rows]

    async def ticket_attempt(self, ticket_id: int, now: datetime) -> None:
        """Committed before a create or close call: after it, that call may have landed."""
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
        """Backlog refused a call for this case (a 4xx): keep it, say why, try later. A
        refused call was not applied, so the next one need not look for it first."""
        await self._write("UPDATE tickets SET last_error = ?, tries = tries + 1, "
                          "next_try_at = ?, attempted_at = NULL, updated_at = ? WHERE id = ?",
                          (error, retry_at, now, ticket_id))

    async def begin_close(self, ticket_id: int, reason: str, now: datetime) -> None:
        """Fix why the case is closed (the closing comment) before the close call."""
        await self._write("UPDATE tickets SET state = 'closing', close_reason = ?, "
                          "attempted_at = NULL, updated_at = ? WHERE id = ? AND state = 'open'",
                          (reason, now, ticket_id))

    async def comments_to_post(self) -> list[TicketComment]:
        rows = await self._all(
            "SELECT c.id, c.ticket_id, t.issue_id, c.content, c.marker, c.attempted_at "
            "FROM ticket_comments c JOIN tickets t ON t.id = c.ticket_id "
            "WHERE c.posted_at IS NULL AND c.dropped_at IS NULL AND t.state = 'open' "
            "ORDER BY c.id")
        return [TicketComment(id=r["id"], ticket_id=r["ticket_id"], issue_id=r["issue_id"],
                              content=r["content"], marker=r["marker"],
                              attempted_at=from_db(r["attempted_at"])) for r in rows]

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
