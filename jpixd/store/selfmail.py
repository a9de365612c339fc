"""Self-service mail (sign-up confirmations, manage links) in the one outbox (issue 24):
a row of `deliveries` with purpose 'confirm' or 'manage' per mail asked for, its limits
counted and decided in the transaction that adds it (so every host shares them), its
claim, and the counts its own guard reads. Its outcomes, recovery and leases are the
deliveries' own (`jpixd.store.deliveries`). The same SQL on both databases."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from jpixd.fanout import PRIORITY_SELF_SERVICE
from jpixd.records import SelfMail
from jpixd.selfmail import BOUNCED_MAILBOX_REST, Counts, Limits, mailbox_key, refusal
from jpixd.store.base import SELF_SERVICE, Plan, Queries, Row, Step, Tx, as_text, marks

# Asked for, in the last hour: a refused request adds no row, and one not sent (skipped,
# failed, suppressed) does not count.
_ASKED = (f"{SELF_SERVICE} AND state IN ('pending', 'retry', 'sending', 'sent') "
          "AND created_at >= ?")
# Bounces and complaints of self-service mail (what its guard and a mailbox's rest count).
_COUNTED = "self_mail_id IS NOT NULL AND counted_in_rate AND occurred_at >= ?"
# Due: the front of the claim's own index (`deliveries_due`, by priority), where no
# notice mail is. (A partial index of its own would cost every notice mail's two state
# changes a test of its condition: 2 % of the sender's instructions.)
_DUE = (f"state IN ('pending', 'retry') AND priority = {PRIORITY_SELF_SERVICE} "
        "AND not_before <= ?")
# Claimed by a sender whose lease ran out (it died mid-send).
_EXPIRED = f"state = 'sending' AND lease_until < ? AND {SELF_SERVICE}"
# A self-service mail goes within hours of being asked for (its retries give up by
# then): the sent count reads the rows asked for since a day before the window, through
# their index, not every mail sent in it. One an operator sent again days later is not
# counted.
_SENT_WITHIN = timedelta(days=1)


async def _count(tx: Tx, sql: str, params: tuple[object, ...]) -> int:
    row = await tx.one(sql, params)
    return int(row["n"]) if row else 0


class SelfMailQueries(Queries):
    async def queue_self_mail(self, kind: str, subscriber_id: int, email: str,
                              now: datetime, limits: Limits,
                              window_start: datetime) -> tuple[int | None, str | None]:
        """A row for a mail to send, or why not (`jpixd.selfmail.refusal`): (id, None)
        or (None, reason). Counted and added under one lock, so two hosts (or two
        requests) cannot both take the last mail of an hour (a named lock: the outbox's
        other writers do not wait for it)."""
        mailbox = mailbox_key(email)
        hour_ago = now - timedelta(hours=1)
        async with self.transaction() as tx:
            if self.lock_sql:
                await tx.execute(self.lock_sql, ("self-service mail",))
            counts = Counts(
                mailbox_last_hour=await _count(
                    tx, f"SELECT COUNT(*) AS n FROM deliveries WHERE mailbox = ? AND {_ASKED}",
                    (mailbox, hour_ago)),
                all_last_hour=await _count(
                    tx, f"SELECT COUNT(*) AS n FROM deliveries WHERE {_ASKED}", (hour_ago,)),
                mailbox_bounced=await tx.one(
                    "SELECT 1 AS x FROM mail_events e JOIN deliveries d "
                    "ON d.id = e.self_mail_id WHERE d.mailbox = ? AND e.counted_in_rate "
                    "AND e.occurred_at >= ? LIMIT 1",
                    (mailbox, now - BOUNCED_MAILBOX_REST)) is not None,
                bounces_in_window=await _count(
                    tx, f"SELECT COUNT(*) AS n FROM mail_events WHERE {_COUNTED}",
                    (window_start,)))
            reason = refusal(counts, limits)
            if reason is not None:
                return None, reason
            row = await tx.one(
                "INSERT INTO deliveries (subscriber_id, email, mailbox, purpose, priority, "
                "state, not_before, first_due_at, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?) RETURNING id",
                (subscriber_id, email, mailbox, kind, PRIORITY_SELF_SERVICE, now, now, now,
                 now))
        assert row is not None
        return int(row["id"]), None

    async def claim_self_mails(self, now: datetime, limit: int, *, claimer: str,
                               lease_until: datetime) -> list[SelfMail]:
        """Self-service mail that is due, oldest first, with any whose claim's lease
        expired, taken under `claimer`'s lease (`sending`, as a claimed delivery): the
        sender's first claim of each round. One plan: one trip on SQLite."""
        # Nearly always none: looked for without taking the write lock (every round).
        if await self._one(f"SELECT 1 AS x FROM deliveries{self.due_index} WHERE {_DUE} "
                           "LIMIT 1", (now,)) is None and \
                await self._one(f"SELECT 1 AS x FROM deliveries WHERE {_EXPIRED} LIMIT 1",
                                (now,)) is None:
            return []
        rows = await self.run_plan(_claim_plan(now, limit, claimer, lease_until,
                                               skip_locked=self.skip_locked,
                                               due_index=self.due_index))
        return [SelfMail(int(r["id"]), str(r["purpose"]), int(r["subscriber_id"]),
                         str(r["email"]), int(r["attempts"])) for r in rows]

    async def self_mail_counts(self, since: datetime) -> tuple[int, int]:
        """(self-service mails sent, their bounces and complaints) since `since`."""
        sent = await self._one(f"SELECT COUNT(*) AS n FROM deliveries WHERE {SELF_SERVICE} "
                               "AND created_at >= ? AND state = 'sent' AND sent_at >= ?",
                               (since - _SENT_WITHIN, since))
        bounced = await self._one(f"SELECT COUNT(*) AS n FROM mail_events WHERE {_COUNTED}",
                                  (since,))
        return (int(sent["n"]) if sent else 0, int(bounced["n"]) if bounced else 0)

    async def list_self_mails(self, *, limit: int = 100,
                              offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Newest first: what was asked for, and what became of it (an operator asked
        "my confirmation never came")."""
        rows, total = await self._page("deliveries", [SELF_SERVICE], [], "id DESC",
                                       limit, offset)
        return [_self_mail_json(r) for r in rows], total


def _claim_plan(now: datetime, limit: int, claimer: str, lease_until: datetime, *,
                skip_locked: str, due_index: str) -> Plan[list[Row]]:
    expired: list[int] = [int(r["id"]) for r in (yield Step(
        f"SELECT id FROM deliveries WHERE {_EXPIRED} ORDER BY id LIMIT ?{skip_locked}",
        (now, limit)))]
    ids = expired
    if len(expired) < limit:
        ids = expired + [int(r["id"]) for r in (yield Step(
            f"SELECT id FROM deliveries{due_index} WHERE {_DUE} "
            f"ORDER BY priority, not_before, id LIMIT ?{skip_locked}",
            (now, limit - len(expired))))]
    if not ids:
        return []
    yield Step("UPDATE deliveries SET state = 'sending', claimed_at = ?, claimed_by = ?, "
               "lease_until = ?, attempts = attempts + 1, updated_at = ? "
               f"WHERE id IN ({marks(ids)})", (now, claimer, lease_until, now, *ids),
               rows=False)
    rows: list[Row] = (yield Step(
        "SELECT id, purpose, subscriber_id, email, attempts FROM deliveries "
        f"WHERE id IN ({marks(ids)}) ORDER BY id", ids))
    return rows


def _self_mail_json(r: Row) -> dict[str, Any]:
    return {"id": r["id"], "kind": r["purpose"], "subscriber_id": r["subscriber_id"],
            "email": r["email"], "state": r["state"], "reason": r["reason"],
            "transport": r["transport"], "ses_message_id": r["ses_message_id"],
            "attempts": r["attempts"], "last_error": r["last_error"],
            "created_at": as_text(r["created_at"]), "sent_at": as_text(r["sent_at"])}
