-- As SQLite's 0015 (issue 24): self-service mail sent by the sender from its row.
-- older releases: compatible
ALTER TABLE self_mails ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE self_mails ADD COLUMN not_before timestamptz;
ALTER TABLE self_mails ADD COLUMN claimed_by text;
ALTER TABLE self_mails ADD COLUMN lease_until timestamptz;
ALTER TABLE self_mails ADD COLUMN last_error text;
ALTER TABLE self_mails ADD COLUMN updated_at timestamptz;
CREATE INDEX self_mails_queued ON self_mails (id) WHERE state = 'queued';
