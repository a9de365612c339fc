"""Deliveries: listing for the admin API and the outbox gauges."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from jpixd.model import (
    Change,
    Claimed,
    Delivery,
    DeliveryState,
    Notice,
    Subscriber,
    SubscriberStatus,
    notice_from_json,
)
from jpixd.outbox import Retry, retry_action
from jpixd.store.base import (
    DELIVERIES,
    NOTICE_MAIL,
    Plan,
    Queries,
    Row,
    Step,
    from_db,
    from_db_req,
    marks,
    tlist,
    where_equal,
)

# Enum members by their stored value: a dictionary's lookup, where calling the enum costs
# a microsecond a column (three of a claimed row's, 400 rows a claim).
_STATES = {s.value: s for s in DeliveryState}
_SUBSCRIBER_STATES = {s.value: s for s in SubscriberStatus}
_CHANGES = {c.value: c for c in Change}


def _row_to_delivery(row: Row) -> Delivery:
    return Delivery(
        id=row["id"], revision_id=row["revision_id"], notice_id=row["notice_id"],
        subscriber_id=row["subscriber_id"], email=row["email"], purpose=row["purpose"],
        slot=row["slot"], priority=row["priority"], state=_STATES[row["state"]],
        not_before=from_db_req(row["not_before"]), attempts=row["attempts"],
        reason=row["reason"], sent_at=from_db(row["sent_at"]), message_id=row["message_id"],
        ses_message_id=row["ses_message_id"], last_error=row["last_error"],
        created_at=from_db(row["created_at"]), updated_at=from_db(row["updated_at"]),
    )


class DeliveryQueries(Queries):
    """The outbox's reads, claims, outcomes, recovery and an admin's retry, the same SQL
    on both databases (the claim a plan, `claim_plan`; "sent" one statement,
    `_mark_sent_statement`)."""

    async def recover_sending(self, now: datetime, claimer: str | None = None) -> int:
        """Rows left in `sending` go out again (at-least-once): `claimer`'s own (its round
        broke), or at start-up every one a crash left. On SQLite that is every one (the
        process owns the file, under the state directory's lock); on a database several
        hosts share, another host's rows are in flight, so only expired leases are taken,
        as any claim takes them."""
        params: list[Any] = []
        if claimer is not None:
            which, params = "AND claimed_by = ?", [claimer]
        elif self.sole_claimer:
            which = ""
        else:
            which, params = "AND (lease_until IS NULL OR lease_until < ?)", [now]
        return await self._write(
            "UPDATE deliveries SET state = 'retry', not_before = ?, updated_at = ?, "
            "reason = 'recovered after a crash', claimed_by = NULL, lease_until = NULL "
            f"WHERE state = 'sending' {which}", (now, now, *params))

    async def mark_sent(self, delivery_id: int, now: datetime, *, transport: str,
                        message_id: str, ses_message_id: str | None) -> None:
        await self.mark_sent_many([(delivery_id, transport, message_id, ses_message_id)], now)

    async def mark_sent_many(self, sent: list[tuple[int, str, str, str | None]],
                             now: datetime) -> None:
        """Several (id, transport, message_id, ses_message_id) at once, in one
        statement, atomic on its own: the sender's group commit, one trip to either
        database (on PostgreSQL a transaction around it was two more, BEGIN and COMMIT)."""
        if sent:
            await self._write(*_mark_sent_statement(sent, now, self))

    async def claim(self, now: datetime, limit: int, *, claimer: str,
                    lease_until: datetime) -> tuple[list[Claimed], int]:
        """`claim_plan`, on either database (SQLite runs it in one trip)."""
        rows, taken_over = await self.run_plan(claim_plan(
            now, limit, claimer, lease_until, skip_locked=self.skip_locked,
            due_index=self.due_index, text_of=self.text_of))
        return [_claimed(r) for r in rows], taken_over

    async def release(self, delivery_id: int, now: datetime) -> None:
        """Put a claimed, unsent delivery back as it was (pause, shutdown)."""
        await self._write(
            "UPDATE deliveries SET state = 'retry', "
            "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, "
            "updated_at = ? WHERE id = ? AND state = 'sending'", (now, delivery_id))

    async def retry_delivery(self, delivery_id: int, now: datetime) -> Delivery | None:
        """An admin's retry: failed, skipped or retry rows become due now."""
        async with self.transaction() as tx:
            row = await tx.one("SELECT state FROM deliveries WHERE id = ?" + self.for_update,
                               (delivery_id,))
            if row is None:
                return None
            action = retry_action(DeliveryState(row["state"]))
            if action == Retry.RESEND:
                await tx.execute(
                    "UPDATE deliveries SET state = 'pending', not_before = ?, attempts = 0, "
                    "first_due_at = ?, reason = 'retried by admin', updated_at = ? "
                    "WHERE id = ?", (now, now, now, delivery_id))
            elif action == Retry.HURRY:
                # Waiting for the subscriber's delivery window (or a reminder's time):
                # due now, as the admin asked.
                await tx.execute(
                    "UPDATE deliveries SET "
                    "not_before = CASE WHEN not_before < ? THEN not_before ELSE ? END, "
                    "first_due_at = CASE WHEN first_due_at < ? THEN first_due_at ELSE ? END, "
                    "reason = 'sent now by admin', updated_at = ? WHERE id = ?",
                    (now, now, now, now, now, delivery_id))
            if action in (Retry.RESEND, Retry.HURRY):
                await tx.notify(DELIVERIES)  # whichever host's sender is idle
        return await self.get_delivery(delivery_id)

    async def list_deliveries(self, *, state: str | None = None, notice_id: int | None = None,
                              subscriber_id: int | None = None, limit: int = 100,
                              offset: int = 0) -> tuple[list[Delivery], int]:
        where, params = where_equal(("state", state), ("notice_id", notice_id),
                                    ("subscriber_id", subscriber_id))
        rows, total = await self._page("deliveries", where, params, "id", limit, offset)
        return [_row_to_delivery(r) for r in rows], total

    async def delivery_counts(self) -> dict[DeliveryState, int]:
        rows = await self._all("SELECT state, COUNT(*) AS n FROM deliveries GROUP BY state")
        counts = dict.fromkeys(DeliveryState, 0)
        for row in rows:
            counts[DeliveryState(row["state"])] = int(row["n"])
        return counts

    async def oldest_pending_age(self, now: datetime) -> float:
        """Seconds since the oldest unsent delivery first became due (0 when none is):
        a mail retrying for an hour is an hour old, however recent its last attempt (the
        stalled-mail monitor: the metric, the admin status and the console show this)."""
        row = await self._one(oldest_waiting_sql(self.due_index), (now, now))
        oldest = from_db(row["t"]) if row else None
        return max((now - oldest).total_seconds(), 0.0) if oldest else 0.0

    async def renew_leases(self, claimer: str, until: datetime) -> int:
        """Keep `claimer`'s rows in flight its own: one statement, however many."""
        return await self._write(
            "UPDATE deliveries SET lease_until = ? WHERE claimed_by = ? AND state = 'sending'",
            (until, claimer))

    async def is_suppressed(self, email: str) -> bool:
        row = await self._one("SELECT 1 FROM suppressions WHERE email = ? AND lifted_at IS NULL",
                              (email,))
        return row is not None

    async def mark_retry(self, delivery_id: int, now: datetime, next_at: datetime,
                         error: str) -> None:
        await self._write(
            "UPDATE deliveries SET state = 'retry', not_before = ?, last_error = ?, "
            "updated_at = ? WHERE id = ?", (next_at, error, now, delivery_id))

    async def mark_final(self, delivery_id: int, now: datetime, state: DeliveryState,
                         reason: str) -> None:
        """failed / suppressed / skipped, with the reason."""
        await self._write(
            "UPDATE deliveries SET state = ?, reason = ?, last_error = CASE WHEN "
            "CAST(? AS TEXT) = 'failed' THEN ? ELSE last_error END, updated_at = ? "
            "WHERE id = ?", (str(state), reason, str(state), reason, now, delivery_id))

    async def next_due_at(self) -> datetime | None:
        row = await self._one("SELECT MIN(not_before) AS t FROM deliveries "
                              "WHERE state IN ('pending', 'retry')")
        return from_db(row["t"]) if row else None

    async def get_delivery(self, delivery_id: int) -> Delivery | None:
        row = await self._one("SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
        return _row_to_delivery(row) if row else None


# A claim sends to the subscriber's address as it is now. A change of address is written
# to waiting rows at once, but a row in flight then (claimed, `sending`) keeps the old one
# and may come back as `retry`: its next attempt must not go to the old address.
CURRENT_ADDRESS = "(SELECT s.email FROM subscribers s WHERE s.id = deliveries.subscriber_id)"


def _mark_sent_statement(sent: list[tuple[int, str, str, str | None]], now: datetime,
                         db: Queries) -> tuple[str, list[Any]]:
    """One statement for the group: on PostgreSQL a group of 8 took 440 µs as a
    statement a row, 270 as one over its arrays; on SQLite the sender's instructions a
    delivery fell by 5 %."""
    source, params = db.each_row(sent, ("bigint", "text", "text", "text"))
    return ("UPDATE deliveries SET state = 'sent', sent_at = ?, transport = u.c1, "
            "message_id = u.c2, ses_message_id = u.c3, last_error = NULL, reason = NULL, "
            f"updated_at = ? FROM {source} WHERE deliveries.id = u.c0", [now, now, *params])


def oldest_waiting_sql(due_index: str) -> str:
    """When the oldest unsent delivery first became due, of those due by `?` (given twice).
    The waiting rows are found by the claim's index, which carries their first-due time
    (they had an index of their own, which each row of a fan-out paid for: 8 ms to read
    76,000 waiting rows this way, on SQLite); the few rows in flight by their state."""
    return ("SELECT MIN(t) AS t FROM ("
            f"SELECT MIN(first_due_at) AS t FROM deliveries{due_index} "
            "WHERE state IN ('pending', 'retry') AND first_due_at <= ? UNION ALL "
            "SELECT MIN(first_due_at) FROM deliveries WHERE state = 'sending' "
            "AND first_due_at <= ?) AS w")


def claim_plan(now: datetime, limit: int, claimer: str, lease_until: datetime, *,
               skip_locked: str, due_index: str, text_of: Callable[[str], str]
               ) -> Plan[tuple[list[Row], int]]:
    """The sender's claim, written once for both databases: due deliveries, failures
    first then oldest, and any whose lease has expired (their sender died mid-send),
    marked `sending` under `claimer`'s lease. Notice mail only: self-service mail shares
    the table and its outcomes, but has no notice to render; the sender claims it first,
    by itself (`jpixd.store.selfmail`). (The rows, how many were taken over from an
    expired lease.) `skip_locked`: PostgreSQL skips rows another host is claiming."""
    expired: list[int] = [r["id"] for r in (yield Step(
        "SELECT id FROM deliveries WHERE state = 'sending' AND lease_until < ? "
        f"AND {NOTICE_MAIL} ORDER BY lease_until LIMIT ?{skip_locked}", (now, limit)))]
    ids = expired
    if len(expired) < limit:
        ids = expired + [r["id"] for r in (yield Step(
            f"SELECT id FROM deliveries{due_index} WHERE state IN ('pending', 'retry') "
            f"AND not_before <= ? AND {NOTICE_MAIL} ORDER BY priority, not_before, id "
            f"LIMIT ?{skip_locked}",
            (now, limit - len(expired))))]
    if not ids:
        return [], 0
    yield Step("UPDATE deliveries SET state = 'sending', claimed_at = ?, claimed_by = ?, "
               f"lease_until = ?, attempts = attempts + 1, email = {CURRENT_ADDRESS}, "
               f"updated_at = ? WHERE id IN ({marks(ids)})",
               (now, claimer, lease_until, now, *ids), rows=False)
    found = (yield Step(f"""
        SELECT d.*, s.email AS s_email, s.name AS s_name, s.organization AS s_org,
               s.charset AS s_charset, s.status AS s_status, s.paused AS s_paused,
               s.deleted_at AS s_deleted, {text_of("s.carriers")} AS s_carriers,
               EXISTS (SELECT 1 FROM suppressions x WHERE x.email = d.email
                       AND x.lifted_at IS NULL) AS suppressed
        FROM deliveries d
        JOIN subscribers s ON s.id = d.subscriber_id
        WHERE d.id IN ({marks(ids)}) ORDER BY d.priority, d.not_before, d.id""", ids))
    # A claim's rows share a revision or two: each one's content is read once, not with
    # every row (PostgreSQL made text of it and sent it over for each of 400 rows).
    revisions = sorted({r["revision_id"] for r in found})
    contents = {r[0]: (r[1], r[2]) for r in (yield Step(
        f"SELECT id, {text_of('content')}, change FROM notice_revisions "
        f"WHERE id IN ({marks(revisions)})", revisions))} if revisions else {}
    # Each row as a dict: SQLite's row finds a column by name by going through its names
    # (a claimed row is read by name about 30 times, among 36 columns: 12 µs a row, a
    # dict 6 with its making).
    names = [*found[0].keys(), "r_content", "r_change"] if found else []
    return [dict(zip(names, (*r, *contents[r["revision_id"]]), strict=True)) for r in found
            if r["revision_id"] in contents], len(expired)


def _claimed(r: Row) -> Claimed:
    delivery = _row_to_delivery(r)
    sub = Subscriber(
        id=r["subscriber_id"], email=r["email"], name=r["s_name"], organization=r["s_org"],
        carriers=tlist(r["s_carriers"]), charset=r["s_charset"],
        status=_SUBSCRIBER_STATES[r["s_status"]], paused=bool(r["s_paused"]))
    change = Change.REMINDER if delivery.purpose == "reminder" else _CHANGES[r["r_change"]]
    return Claimed(delivery=delivery, notice_id=r["notice_id"],
                   notice=_notice(r["r_content"]), change=change,
                   subscriber=sub, subscriber_live=r["s_deleted"] is None,
                   suppressed=bool(r["suppressed"]))


@functools.lru_cache(maxsize=256)
def _notice(content: str) -> Notice:
    """A revision's content, parsed once for all its deliveries."""
    return notice_from_json(json.loads(content))
