-- One outbox (issue 24): self-service mail (a sign-up's confirmation, a manage link) is a
-- row of `deliveries` with purpose 'confirm' or 'manage', claimed, leased, retried,
-- recovered, archived and counted as notice mail is; `self_mails` goes. Such a row has
-- no revision or notice, and keeps `mailbox` (the address as its limits count it).
-- `deliveries` loses its foreign keys, as PostgreSQL's did (pg 0003): a never-confirmed
-- sign-up is removed by retention while its confirmation's row, a bounce still pointing
-- at it, stays. Loosening constraints needs no new table: the stored schema text is
-- rewritten (sqlite.org/lang_altertable.html §7; safe, every row satisfies the looser
-- rule) and the schema version bumped (`PRAGMA jpixd_bump_schema_version`, the runner's).
-- Not compatible with older releases: their sender would claim the self-service rows.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(replace(replace(replace(sql, 'revision_id     INTEGER NOT NULL REFERENCES notice_revisions (id)', 'revision_id     INTEGER'), 'notice_id       INTEGER NOT NULL REFERENCES notices (id)', 'notice_id       INTEGER'), 'subscriber_id   INTEGER NOT NULL REFERENCES subscribers (id)', 'subscriber_id   INTEGER NOT NULL'), 'CHECK (purpose IN (''notice'', ''reminder''))', 'CHECK (purpose IN (''notice'', ''reminder'', ''confirm'', ''manage''))') WHERE type = 'table' AND name = 'deliveries';
PRAGMA jpixd_bump_schema_version;
PRAGMA writable_schema = OFF;
ALTER TABLE deliveries ADD COLUMN mailbox TEXT;
-- The limits: what a mailbox, and everyone, asked for in the last hour.
CREATE INDEX deliveries_mailbox ON deliveries (mailbox, created_at)
    WHERE purpose IN ('confirm', 'manage');
CREATE INDEX deliveries_self_created ON deliveries (created_at)
    WHERE purpose IN ('confirm', 'manage');
-- Each self-service mail keeps its id, moved past the deliveries' (an event names it),
-- and takes priority -10 (`jpixd.fanout.PRIORITY_SELF_SERVICE`): ahead of any notice
-- mail in the claim's index, where the sender finds it each round.
CREATE TEMP TABLE one_outbox_offset AS SELECT COALESCE(MAX(id), 0) AS n FROM deliveries;
INSERT INTO deliveries (id, revision_id, notice_id, subscriber_id, email, purpose, slot,
                        priority, state, reason, not_before, first_due_at, attempts,
                        claimed_by, lease_until, sent_at, transport, message_id,
                        ses_message_id, last_error, created_at, updated_at, mailbox)
SELECT (SELECT n FROM one_outbox_offset) + m.id, NULL, NULL, m.subscriber_id, m.email,
       m.kind, '', -10,
       CASE WHEN m.state <> 'queued' THEN m.state
            WHEN m.claimed_by IS NOT NULL THEN 'sending'
            WHEN m.attempts > 0 THEN 'retry' ELSE 'pending' END,
       m.reason, COALESCE(m.not_before, m.created_at), m.created_at, m.attempts,
       m.claimed_by, m.lease_until, m.sent_at, m.transport, m.message_id,
       m.ses_message_id, m.last_error, m.created_at, COALESCE(m.updated_at, m.created_at),
       m.mailbox
FROM self_mails m ORDER BY m.id;
-- An event of a self-service mail names its row (`self_mail_id` now tells such an event
-- apart: the delivery's id, as `delivery_id`).
UPDATE mail_events SET self_mail_id = (SELECT n FROM one_outbox_offset) + self_mail_id,
                       delivery_id = (SELECT n FROM one_outbox_offset) + self_mail_id
WHERE self_mail_id IN (SELECT id FROM self_mails);
DROP TABLE one_outbox_offset;
DROP TABLE self_mails;
