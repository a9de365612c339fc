"""PostgreSQL: the event archive's outbox. Trigger functions write one record per
change in the change's own transaction, as SQLite's triggers do (see
`jpixd.store.archive`); a fan-out's creations and supersessions are chunked records
written by the fan-out itself."""

from __future__ import annotations

from jpixd.store.archive import CREATED_CHUNK, SUPERSEDED_CHUNK, ArchiveQueries
from jpixd.store.pg.base import PgBase

_DELIVERY = ("jsonb_build_object('type', 'delivery', 'id', NEW.id, 'notice_id', NEW.notice_id, "
             "'subscriber_id', NEW.subscriber_id, 'email', NEW.email, 'purpose', NEW.purpose, "
             "'state', NEW.state, 'reason', NEW.reason, 'attempts', NEW.attempts, "
             "'transport', NEW.transport, 'ses_message_id', NEW.ses_message_id, "
             "'at', NEW.updated_at)")
_EVENT = ("jsonb_build_object('type', 'mail_event', 'id', NEW.id, 'event', NEW.type, "
          "'subtype', NEW.subtype, 'recipient', NEW.recipient, 'ses_message_id', "
          "NEW.ses_message_id, 'delivery_id', NEW.delivery_id, 'diagnostic', NEW.diagnostic, "
          "'at', NEW.occurred_at, 'received_at', NEW.received_at)")
_SUPPRESSION = ("jsonb_build_object('type', 'suppression', 'email', NEW.email, 'reason', "
                "NEW.reason, 'lifted_at', NEW.lifted_at, 'lifted_by', NEW.lifted_by, 'at', "
                "COALESCE(NEW.lifted_at, NEW.last_event_at))")
_SENDING = "jsonb_build_object('type', 'sending', 'state', NEW.value, 'at', NEW.updated_at)"
_TICKET = ("jsonb_build_object('type', 'backlog', 'action', 'case_' || NEW.state, "
           "'ticket_id', NEW.id, 'kind', NEW.kind, 'email', NEW.email, 'issue_key', "
           "NEW.issue_key, 'close_reason', NEW.close_reason, 'at', NEW.updated_at)")
_COMMENT = ("jsonb_build_object('type', 'backlog', 'action', 'comment_posted', 'ticket_id', "
            "NEW.ticket_id, 'comment_id', NEW.id, 'at', NEW.posted_at)")
_CHANNEL_MESSAGE = ("jsonb_build_object('type', 'channel_message', 'id', NEW.id, "
                    "'channel_id', NEW.channel_id, 'kind', NEW.kind, 'purpose', NEW.purpose, "
                    "'notice_id', NEW.notice_id, 'state', NEW.state, 'reason', NEW.reason, "
                    "'attempts', NEW.attempts, 'status', NEW.last_status, 'at', "
                    "NEW.updated_at)")

# name → (table, when, condition, record, time)
_TRIGGERS: dict[str, tuple[str, str, str, str, str]] = {
    "delivery_state": ("deliveries", "AFTER UPDATE OF state",
                       "NEW.state IS DISTINCT FROM OLD.state AND NOT (NEW.state = 'skipped' "
                       "AND NEW.reason IS NOT DISTINCT FROM 'superseded')",
                       _DELIVERY, "NEW.updated_at"),
    "mail_event": ("mail_events", "AFTER INSERT", "true", _EVENT, "NEW.received_at"),
    "suppression_new": ("suppressions", "AFTER INSERT", "true", _SUPPRESSION,
                        "NEW.created_at"),
    "suppression_change": ("suppressions", "AFTER UPDATE",
                           "NEW.lifted_at IS DISTINCT FROM OLD.lifted_at OR "
                           "NEW.reason IS DISTINCT FROM OLD.reason", _SUPPRESSION,
                           "COALESCE(NEW.lifted_at, NEW.last_event_at)"),
    "sending_new": ("control", "AFTER INSERT", "NEW.key = 'sending'", _SENDING,
                    "NEW.updated_at"),
    "sending_change": ("control", "AFTER UPDATE", "NEW.key = 'sending'", _SENDING,
                       "NEW.updated_at"),
    "ticket_new": ("tickets", "AFTER INSERT", "true", _TICKET, "NEW.updated_at"),
    "ticket_state": ("tickets", "AFTER UPDATE OF state", "NEW.state IS DISTINCT FROM OLD.state",
                     _TICKET, "NEW.updated_at"),
    "comment_posted": ("ticket_comments", "AFTER UPDATE OF posted_at",
                       "NEW.posted_at IS NOT NULL AND OLD.posted_at IS NULL", _COMMENT,
                       "NEW.posted_at"),
    # Self-service mail is asked for a row at a time (a fan-out's rows are recorded in
    # chunks, `_CREATED_SQL`); its later states are any delivery's.
    "self_mail_new": ("deliveries", "AFTER INSERT", "NEW.purpose IN ('confirm', 'manage')",
                      _DELIVERY, "NEW.created_at"),
    "channel_message_state": ("channel_messages", "AFTER UPDATE OF state",
                              "NEW.state IS DISTINCT FROM OLD.state", _CHANNEL_MESSAGE,
                              "NEW.updated_at"),
}
# Hosts starting together install the triggers one at a time.
_LOCK_KEY = int.from_bytes(b"jpixdarc", "big") >> 1


_CREATED_SQL = f"""
INSERT INTO archive_outbox (record, created_at)
SELECT jsonb_build_object('type', 'deliveries_created', 'notice_id', MIN(notice_id),
           'revision_id', MIN(revision_id), 'state', 'pending', 'count', COUNT(*),
           'deliveries', jsonb_agg(jsonb_build_array(id, subscriber_id, email,
                                   purpose, slot, not_before) ORDER BY id),
           'at', MIN(created_at)), MIN(created_at)
FROM (SELECT d.*, (id - MIN(id) OVER ()) / {CREATED_CHUNK} AS chunk
      FROM deliveries d WHERE revision_id = ?) x
GROUP BY chunk ORDER BY MIN(id)"""


_SUPERSEDED_SQL = f"""
INSERT INTO archive_outbox (record, created_at)
SELECT jsonb_build_object('type', 'deliveries_superseded', 'notice_id', MIN(notice_id),
           'state', 'skipped', 'reason', 'superseded', 'count', COUNT(*),
           'ids', jsonb_agg(id ORDER BY id), 'at', MIN(updated_at)), MIN(updated_at)
FROM deliveries WHERE notice_id = ? AND state = 'skipped'
     AND reason = 'superseded' AND updated_at = ?
GROUP BY id / {SUPERSEDED_CHUNK} ORDER BY MIN(id)"""


class PgArchiveStore(ArchiveQueries, PgBase):
    created_records_sql = _CREATED_SQL
    superseded_records_sql = _SUPERSEDED_SQL

    async def set_archiving(self, on: bool) -> None:
        async with self._tx() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            for name, (table, when, cond, record, at) in _TRIGGERS.items():
                await conn.execute(f"DROP TRIGGER IF EXISTS archive_{name} ON {table}")
                if not on:
                    continue
                await conn.execute(
                    f"CREATE OR REPLACE FUNCTION archive_{name}() RETURNS trigger "
                    f"LANGUAGE plpgsql AS $f$ BEGIN INSERT INTO archive_outbox (record, "
                    f"created_at) VALUES ({record}, {at}); RETURN NULL; END $f$")
                await conn.execute(f"CREATE TRIGGER archive_{name} {when} ON {table} "
                                   f"FOR EACH ROW WHEN ({cond}) "
                                   f"EXECUTE FUNCTION archive_{name}()")
        self.archiving = on
