-- As SQLite's 0013 (issue 21): self-service mail as rows (limits shared by every host,
-- its bounces told from notice mail's), the latest sign-up's time, console logouts.
-- Only additions:
-- older releases: compatible
CREATE TABLE self_mails (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('confirm', 'manage')),
    subscriber_id   bigint NOT NULL,
    email           text NOT NULL,
    mailbox         text NOT NULL,
    state           text NOT NULL CHECK (state IN ('queued', 'sent', 'failed', 'skipped')),
    reason          text,
    transport       text,
    message_id      text,
    ses_message_id  text,
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz
);
CREATE INDEX self_mails_mailbox ON self_mails (mailbox, created_at);
CREATE INDEX self_mails_created ON self_mails (created_at);
CREATE INDEX self_mails_ses ON self_mails (ses_message_id) WHERE ses_message_id IS NOT NULL;
ALTER TABLE mail_events ADD COLUMN self_mail_id bigint;
CREATE INDEX mail_events_self_mail ON mail_events (occurred_at) WHERE self_mail_id IS NOT NULL;
ALTER TABLE subscribers ADD COLUMN signed_up_at timestamptz;
CREATE TABLE console_logouts (
    session         text PRIMARY KEY,
    expires_at      timestamptz NOT NULL
);
