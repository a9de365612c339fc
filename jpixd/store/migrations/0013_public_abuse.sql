-- The public side under abuse (issue 21). Only additions: older releases run on it.
-- older releases: compatible
-- Mail that strangers can cause (sign-up confirmations, manage links), one row each as it
-- is asked for: the per-mailbox and global limits count these rows (shared by every
-- host), a send records its SES message id, and a bounce or complaint of such a mail is
-- told from notice mail by it (mail_events.self_mail_id), so that it never moves the
-- guard that protects notice mail, never suppresses and never files a Backlog case.
CREATE TABLE self_mails (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('confirm', 'manage')),
    subscriber_id   INTEGER NOT NULL,
    email           TEXT NOT NULL,
    mailbox         TEXT NOT NULL,  -- the address as limited (case, +tag, provider dots)
    state           TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'failed', 'skipped')),
    reason          TEXT,
    transport       TEXT,
    message_id      TEXT,
    ses_message_id  TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE INDEX self_mails_mailbox ON self_mails (mailbox, created_at);
CREATE INDEX self_mails_created ON self_mails (created_at);
CREATE INDEX self_mails_ses ON self_mails (ses_message_id) WHERE ses_message_id IS NOT NULL;
ALTER TABLE mail_events ADD COLUMN self_mail_id INTEGER;
CREATE INDEX mail_events_self_mail ON mail_events (occurred_at) WHERE self_mail_id IS NOT NULL;
-- The latest sign-up of a pending address: a confirmation link issued before it (a
-- stranger's earlier form, or a mail from before an unsubscribe) confirms nothing.
ALTER TABLE subscribers ADD COLUMN signed_up_at TEXT;
-- Console sessions ended by logging out, until they would have expired anyway.
CREATE TABLE console_logouts (
    session         TEXT PRIMARY KEY,
    expires_at      TEXT NOT NULL
);
