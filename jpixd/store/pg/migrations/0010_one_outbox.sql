-- As SQLite's 0019 (issue 24): self-service mail as rows of `deliveries` (purpose
-- 'confirm' or 'manage', no revision or notice, its `mailbox`); `self_mails` goes.
-- Not compatible with older releases: their sender would claim the self-service rows.
ALTER TABLE deliveries ALTER COLUMN revision_id DROP NOT NULL;
ALTER TABLE deliveries ALTER COLUMN notice_id DROP NOT NULL;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_purpose_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_purpose_check
    CHECK (purpose IN ('notice', 'reminder', 'confirm', 'manage'));
ALTER TABLE deliveries ADD COLUMN mailbox text;
CREATE INDEX deliveries_mailbox ON deliveries (mailbox, created_at)
    WHERE purpose IN ('confirm', 'manage');
CREATE INDEX deliveries_self_created ON deliveries (created_at)
    WHERE purpose IN ('confirm', 'manage');
CREATE TEMP TABLE one_outbox_offset ON COMMIT DROP AS
    SELECT COALESCE(MAX(id), 0) AS n FROM deliveries;
INSERT INTO deliveries (id, revision_id, notice_id, subscriber_id, email, purpose, slot,
                        priority, state, reason, not_before, first_due_at, attempts,
                        claimed_by, lease_until, sent_at, transport, message_id,
                        ses_message_id, last_error, created_at, updated_at, mailbox)
OVERRIDING SYSTEM VALUE
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
UPDATE mail_events SET self_mail_id = (SELECT n FROM one_outbox_offset) + self_mail_id,
                       delivery_id = (SELECT n FROM one_outbox_offset) + self_mail_id
WHERE self_mail_id IN (SELECT id FROM self_mails);
-- The identity goes on past the moved rows.
SELECT setval(pg_get_serial_sequence('deliveries', 'id'),
              (SELECT COALESCE(MAX(id), 0) + 1 FROM deliveries), false);
DROP TABLE self_mails;
-- Its archive triggers went with it; their functions stay unless dropped.
DROP FUNCTION IF EXISTS archive_self_mail_new();
DROP FUNCTION IF EXISTS archive_self_mail_state();
