"""Self-service mail (sign-up confirmations, manage links): a row per mail asked for,
its limits counted and decided in the transaction that adds it (so every host shares
them), its outcome, and the counts its own guard reads. The same SQL on both databases."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from jpixd.records import SelfMail
from jpixd.selfmail import BOUNCED_MAILBOX_REST, Counts, Limits, mailbox_key, refusal
from jpixd.store.base import Queries, Row, Tx, as_text

# Asked for, in the last hour: a refused request adds no row, so it does not count.
_ASKED = "state IN ('queued', 'sent') AND created_at >= ?"
# Bounces and complaints of self-service mail (what its guard and a mailbox's rest count).
_COUNTED = "self_mail_id IS NOT NULL AND counted_in_rate AND occurred_at >= ?"



async def _count(tx: Tx, sql: str, params: tuple[object, ...]) -> int:
    row = await tx.one(sql, params)
    return int(row["n"]) if row else 0


class SelfMailQueries(Queries):
    async def queue_self_mail(self, kind: str, subscriber_id: int, email: str,
                              now: datetime, limits: Limits,
                              window_start: datetime) -> tuple[int | None, str | None]:
        """A row for a mail to send, or why not (`jpixd.selfmail.refusal`): (id, None)
        or (None, reason). Counted and added under one lock, so two hosts (or two
        requests) cannot both take the last mail of an hour."""
        mailbox = mailbox_key(email)
        hour_ago = now - timedelta(hours=1)
        async with self.transaction(lock="self_mails") as tx:
            counts = Counts(
                mailbox_last_hour=await _count(
                    tx, f"SELECT COUNT(*) AS n FROM self_mails WHERE mailbox = ? AND {_ASKED}",
                    (mailbox, hour_ago)),
                all_last_hour=await _count(
                    tx, f"SELECT COUNT(*) AS n FROM self_mails WHERE {_ASKED}", (hour_ago,)),
                mailbox_bounced=await tx.one(
                    "SELECT 1 AS x FROM mail_events e JOIN self_mails m "
                    "ON m.id = e.self_mail_id WHERE m.mailbox = ? AND e.counted_in_rate "
                    "AND e.occurred_at >= ? LIMIT 1",
                    (mailbox, now - BOUNCED_MAILBOX_REST)) is not None,
                bounces_in_window=await _count(
                    tx, f"SELECT COUNT(*) AS n FROM mail_events WHERE {_COUNTED}",
                    (window_start,)))
            reason = refusal(counts, limits)
            if reason is not None:
                return None, reason
            row = await tx.one(
                "INSERT INTO self_mails (kind, subscriber_id, email, mailbox, state, "
                "created_at) VALUES (?, ?, ?, ?, 'queued', ?) RETURNING id",
                (kind, subscriber_id, email, mailbox, now))
        assert row is not None
        return int(row["id"]), None

    async def claim_self_mails(self, now: datetime, limit: int, *, claimer: str,
                               lease_until: datetime) -> list[SelfMail]:
        """Queued self-service mail that is due, oldest first, with any whose claim's
        lease expired (its sender died mid-send), taken under `claimer`'s lease: the
        sender's part of the one way out (issue 24)."""
        # Nearly always none: looked for without taking the write lock (every round).
        if await self._one("SELECT 1 AS x FROM self_mails WHERE state = 'queued' LIMIT 1") \
                is None:
            return []
        async with self.transaction() as tx:
            rows = await tx.all(
                "SELECT id FROM self_mails WHERE state = 'queued' "
                "AND (lease_until IS NULL OR lease_until < ?) "
                "AND (not_before IS NULL OR not_before <= ?) "
                f"ORDER BY id LIMIT ?{self.skip_locked}", (now, now, limit))
            ids = [int(r["id"]) for r in rows]
            if not ids:
                return []
            marks = ", ".join("?" for _ in ids)
            await tx.execute(
                "UPDATE self_mails SET claimed_by = ?, lease_until = ?, "
                f"attempts = attempts + 1 WHERE id IN ({marks})", (claimer, lease_until, *ids))
            got = await tx.all(f"SELECT * FROM self_mails WHERE id IN ({marks}) ORDER BY id",
                               ids)
        return [SelfMail(int(r["id"]), str(r["kind"]), int(r["subscriber_id"]),
                         str(r["email"]), int(r["attempts"])) for r in got]

    async def recover_self_mails(self, claimer: str | None = None) -> int:
        """Claims left by a crash go out again: `claimer`'s own (its round broke), or at
        start-up every one where this process claims alone (SQLite); on a shared
        database another host's are in flight, and an expired lease is claimed anyway."""
        if claimer is None and not self.sole_claimer:
            return 0
        who, params = ("AND claimed_by = ?", (claimer,)) if claimer is not None else ("", ())
        return await self._write(
            "UPDATE self_mails SET claimed_by = NULL, lease_until = NULL "
            f"WHERE state = 'queued' AND claimed_by IS NOT NULL {who}", params)

    async def self_mail_sent(self, mail_id: int, now: datetime, *, transport: str,
                             message_id: str, ses_message_id: str | None) -> None:
        await self._write(
            "UPDATE self_mails SET state = 'sent', sent_at = ?, updated_at = ?, "
            "transport = ?, message_id = ?, ses_message_id = ?, claimed_by = NULL, "
            "lease_until = NULL WHERE id = ?",
            (now, now, transport, message_id, ses_message_id, mail_id))

    async def self_mail_not_sent(self, mail_id: int, now: datetime, *, failed: bool,
                                 reason: str) -> None:
        """Skipped (paused, suppressed, shadow) or failed (the transport refused it)."""
        await self._write("UPDATE self_mails SET state = ?, reason = ?, updated_at = ?, "
                          "claimed_by = NULL, lease_until = NULL WHERE id = ?",
                          ("failed" if failed else "skipped", reason, now, mail_id))

    async def self_mail_retry(self, mail_id: int, now: datetime, next_at: datetime,
                              error: str) -> None:
        """A temporary refusal: queued again for `next_at`."""
        await self._write("UPDATE self_mails SET not_before = ?, last_error = ?, "
                          "updated_at = ?, claimed_by = NULL, lease_until = NULL WHERE id = ?",
                          (next_at, error, now, mail_id))

    async def self_mail_release(self, mail_id: int) -> None:
        """Claimed but not sent (a pause of the account, a shutdown): queued as it was."""
        await self._write("UPDATE self_mails SET attempts = CASE WHEN attempts > 0 THEN "
                          "attempts - 1 ELSE 0 END, claimed_by = NULL, lease_until = NULL "
                          "WHERE id = ?", (mail_id,))

    async def self_mail_counts(self, since: datetime) -> tuple[int, int]:
        """(self-service mails sent, their bounces and complaints) since `since`."""
        sent = await self._one("SELECT COUNT(*) AS n FROM self_mails WHERE state = 'sent' "
                               "AND sent_at >= ?", (since,))
        bounced = await self._one(f"SELECT COUNT(*) AS n FROM mail_events WHERE {_COUNTED}",
                                  (since,))
        return (int(sent["n"]) if sent else 0, int(bounced["n"]) if bounced else 0)

    async def list_self_mails(self, *, limit: int = 100,
                              offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Newest first: what was asked for, and what became of it (an operator asked
        "my confirmation never came")."""
        rows, total = await self._page("self_mails", [], [], "id DESC", limit, offset)
        return [_self_mail_json(r) for r in rows], total


def _self_mail_json(r: Row) -> dict[str, Any]:
    return {"id": r["id"], "kind": r["kind"], "subscriber_id": r["subscriber_id"],
            "email": r["email"], "state": r["state"], "reason": r["reason"],
            "transport": r["transport"], "ses_message_id": r["ses_message_id"],
            "attempts": r["attempts"], "last_error": r["last_error"],
            "created_at": as_text(r["created_at"]), "sent_at": as_text(r["sent_at"])}
