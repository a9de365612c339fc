-- Self-service mail is sent by the sender from its row (issue 24): claimed under a lease,
-- retried after a transport's temporary refusal, sent again after a crash.
-- older releases: compatible
ALTER TABLE self_mails ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE self_mails ADD COLUMN not_before TEXT;
ALTER TABLE self_mails ADD COLUMN claimed_by TEXT;
ALTER TABLE self_mails ADD COLUMN lease_until TEXT;
ALTER TABLE self_mails ADD COLUMN last_error TEXT;
ALTER TABLE self_mails ADD COLUMN updated_at TEXT;
CREATE INDEX self_mails_queued ON self_mails (id) WHERE state = 'queued';
