"""Pruning on purpose ([retention]): finished deliveries, SES events, superseded notice
revisions, the quarantine, ended Backlog cases and never-confirmed sign-ups older than
their retention are deleted
in small batches (each its own short transaction, so sending never waits long for the
database). What something still points at is kept: an event a suppression names, a
revision a kept delivery belongs to, a notice's current revision."""

from __future__ import annotations

from datetime import datetime

from jpixd.records import Pruned
from jpixd.store.base import NOTICE_MAIL, Queries, marks

BATCH = 500

# (what, the statement choosing up to ? ids older than ?, the statements deleting them).
_RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    # An event that a live suppression or an open Backlog case names stays; a lifted
    # suppression or an ended case keeps its own text and lets go of the event.
    "events": (
        "SELECT id FROM mail_events e WHERE received_at < ? "
        "AND NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.event_id = e.id "
        "                AND s.lifted_at IS NULL) "
        "AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.event_id = e.id "
        "                AND t.state NOT IN ('closed', 'gone')) LIMIT ?",
        ("UPDATE suppressions SET event_id = NULL WHERE event_id IN ({ids})",
         "UPDATE tickets SET event_id = NULL WHERE event_id IN ({ids})",
         "DELETE FROM mail_events WHERE id IN ({ids})")),
    "deliveries": (
        "SELECT id FROM deliveries d WHERE state IN ('sent', 'failed', 'suppressed', 'skipped', "
        "'shadow') AND updated_at < ? "
        "AND NOT EXISTS (SELECT 1 FROM mail_events e WHERE e.delivery_id = d.id) LIMIT ?",
        ("DELETE FROM shadow_mail WHERE delivery_id IN ({ids})",
         "DELETE FROM deliveries WHERE id IN ({ids})")),
    "revisions": (
        "SELECT r.id FROM notice_revisions r JOIN notices n ON n.id = r.notice_id "
        "WHERE r.seen_at < ? AND r.revision <> n.revision "
        "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.revision_id = r.id) LIMIT ?",
        ("DELETE FROM notice_revisions WHERE id IN ({ids})",)),
    "quarantine": (
        "SELECT id FROM quarantine WHERE received_at < ? LIMIT ?",
        ("DELETE FROM quarantine WHERE id IN ({ids})",)),
    "tickets": (
        "SELECT id FROM tickets WHERE state IN ('closed', 'gone') AND updated_at < ? LIMIT ?",
        ("DELETE FROM ticket_comments WHERE ticket_id IN ({ids})",
         "DELETE FROM tickets WHERE id IN ({ids})")),
}
_RULES["pending_subscribers"] = (
    # Sign-ups never confirmed (a typo, or a stranger's form): nothing was ever mailed
    # to them but the confirmation. Its row stays as long as deliveries do (a bounce may
    # name it, and a mailbox's rest reads that), naming a subscriber no longer there.
    "SELECT id FROM subscribers s WHERE status = 'pending' AND deleted_at IS NULL "
    "AND created_at < ? AND NOT EXISTS (SELECT 1 FROM deliveries d "
    f"                                   WHERE d.subscriber_id = s.id AND {NOTICE_MAIL}) "
    "LIMIT ?",
    ("DELETE FROM subscriber_changes WHERE subscriber_id IN ({ids})",
     "DELETE FROM subscribers WHERE id IN ({ids})"))
_RULES["channel_messages"] = (
    "SELECT id FROM channel_messages WHERE state <> 'queued' AND updated_at < ? LIMIT ?",
    ("DELETE FROM channel_messages WHERE id IN ({ids})",))
_RULES["console_logouts"] = (
    "SELECT session AS id FROM console_logouts WHERE expires_at < ? LIMIT ?",
    ("DELETE FROM console_logouts WHERE session IN ({ids})",))
# Events go before the deliveries they name; deliveries before their revisions.
ORDER = ("events", "deliveries", "revisions", "quarantine", "tickets", "pending_subscribers",
         "channel_messages", "console_logouts")



class RetentionStore(Queries):
    async def prune(self, cutoffs: dict[str, datetime], *, batch: int = BATCH,
                    max_batches: int = 100) -> Pruned:
        """Delete what is older than its cutoff, at most `batch` rows a transaction and
        `max_batches` transactions a call (the rest goes at the next call)."""
        counts = dict.fromkeys(ORDER, 0)
        budget = max_batches
        for what in ORDER:
            if what not in cutoffs:
                continue
            choose, deletes = _RULES[what]
            while budget > 0:
                budget -= 1
                async with self.transaction() as tx:
                    ids = [r["id"] for r in await tx.all(choose, (cutoffs[what], batch))]
                    if not ids:
                        break
                    for sql in deletes:
                        await tx.execute(sql.format(ids=marks(ids)), ids)
                counts[what] += len(ids)
                if len(ids) < batch:
                    break
        return Pruned(counts)
