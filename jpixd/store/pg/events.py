"""PostgreSQL: SES events, suppressions and the guard's counts. The same decisions as
on SQLite (`jpixd.bounces.rules`); a message's events are one transaction, and events
of one batch each a savepoint."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo

from jpixd.bounces.parse import MailEvent
from jpixd.bounces.rules import Decision, is_soft_bounce
from jpixd.records import EventOutcome
from jpixd.store.base import SUBSCRIBERS_VERSION
from jpixd.store.events import SELF_MAIL_BY_SES_ID, Decider, EventQueries
from jpixd.store.pg.base import Conn, PgBase, PgTx, q
from jpixd.store.pg.tickets import file_bounce
from jpixd.store.subscribers import log_change


async def _record(conn: Conn, e: MailEvent, now: datetime, decide: Decider,
                  soft_window: timedelta, file_cases: bool, tz: tzinfo) -> EventOutcome:
    delivery_id = await conn.fetchval(q(
        "SELECT id FROM deliveries WHERE ses_message_id = ? LIMIT 1"),
        e.ses_message_id) if e.ses_message_id else None
    self_mail_id = await conn.fetchval(q(SELF_MAIL_BY_SES_ID), e.ses_message_id) \
        if e.ses_message_id and delivery_id is None else None
    soft_bounce = is_soft_bounce(e)
    event_id = await conn.fetchval(q(
        "INSERT INTO mail_events (event_key, type, subtype, recipient, ses_message_id, "
        "delivery_id, diagnostic, occurred_at, received_at, raw, soft, self_mail_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_key) DO NOTHING "
        "RETURNING id"),
        e.key, e.type, e.subtype, e.recipient, e.ses_message_id, delivery_id,
        _opt(e.diagnostic), e.occurred_at, now, PgBase.storable(e.raw), soft_bounce,
        self_mail_id)
    if event_id is None:
        return EventOutcome(e, new=False)
    soft = 0
    if soft_bounce:
        soft = int(await conn.fetchval(q(
            "SELECT COUNT(*) FROM mail_events WHERE recipient = ? AND soft "
            "AND occurred_at >= ?"), e.recipient, e.occurred_at - soft_window))
    decision = decide(e, soft, self_mail_id is not None)
    await conn.execute(q("UPDATE mail_events SET counted_in_rate = ? WHERE id = ?"),
                       decision.counted, event_id)
    if decision.suppress:
        await _suppress(conn, e, event_id, decision, now)
    if e.type == "Bounce" and file_cases and not decision.self_service:
        await file_bounce(conn, e, event_id, delivery_id, now, tz)
    return EventOutcome(e, new=True, delivery_id=delivery_id, suppressed=decision.suppress,
                        reason=decision.reason)


async def _suppress(conn: Conn, e: MailEvent, event_id: int, decision: Decision,
                    now: datetime) -> None:
    await conn.execute(q(
        "INSERT INTO suppressions (email, reason, first_event_at, last_event_at, event_id, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO UPDATE SET "
        "reason = excluded.reason, last_event_at = excluded.last_event_at, "
        "event_id = excluded.event_id, lifted_at = NULL, lifted_by = NULL, "
        "first_event_at = CASE WHEN suppressions.lifted_at IS NULL "
        "THEN suppressions.first_event_at ELSE excluded.first_event_at END"),
        e.recipient, decision.reason or e.type, e.occurred_at, e.occurred_at, event_id, now)
    await conn.execute(q(
        "UPDATE deliveries SET state = 'suppressed', reason = ?, updated_at = ? "
        "WHERE email = ? AND state IN ('pending', 'retry')"),
        f"address suppressed: {decision.reason}", now, e.recipient)
    status = "unsubscribed" if decision.unsubscribe else "suppressed"
    changed = await conn.fetchval(q(
        "UPDATE subscribers SET status = ?, updated_at = ?, signed_up_at = NULL "
        "WHERE id = (SELECT id FROM "
        "subscribers WHERE email = ? AND deleted_at IS NULL AND status = 'active' LIMIT 1) "
        "RETURNING id"), status, now, e.recipient)
    if changed is not None:
        tx = PgTx(conn)
        await log_change(tx, int(changed), "bounces", status,
                         f"{e.type} {e.subtype or ''}: {decision.reason or ''}".strip(), now)
        await tx.execute(PgBase.bump_version_sql, (SUBSCRIBERS_VERSION, now))


def _opt(text: str | None) -> str | None:
    return PgBase.storable(text) if text else text


class PgEventStore(EventQueries, PgBase):
    async def record_events(self, events: Sequence[MailEvent], now: datetime, *,
                            decide: Decider, soft_window: timedelta,
                            file_cases: bool = True) -> list[EventOutcome]:
        async with self._tx() as conn:
            return [await _record(conn, e, now, decide, soft_window, file_cases, self.tz)
                    for e in events]

    async def record_event_batches(
            self, batches: Sequence[Sequence[MailEvent]], now: datetime, *, decide: Decider,
            soft_window: timedelta, file_cases: bool = True
    ) -> list[list[EventOutcome] | Exception]:
        out: list[list[EventOutcome] | Exception] = []
        async with self._tx() as conn:
            for events in batches:
                try:
                    async with conn.transaction():  # a savepoint per message
                        out.append([await _record(conn, e, now, decide, soft_window,
                                                  file_cases, self.tz) for e in events])
                except Exception as exc:  # this message, not the receive
                    out.append(exc)
        return out

    async def hourly_activity(self, since: datetime) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        hour = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')"
        for r in await self._all(f"SELECT {hour.format('sent_at')} AS h, COUNT(*) AS n FROM "
                                 "deliveries WHERE state = 'sent' AND sent_at >= ? "
                                 "GROUP BY h", (since,)):
            out.setdefault(r["h"], {})["sent"] = int(r["n"])
        for r in await self._all(f"SELECT {hour.format('occurred_at')} AS h, type, "
                                 "COUNT(*) AS n FROM mail_events WHERE type IN ('Bounce', "
                                 "'Complaint') AND occurred_at >= ? GROUP BY h, type", (since,)):
            out.setdefault(r["h"], {})[str(r["type"]).lower()] = int(r["n"])
        return out
