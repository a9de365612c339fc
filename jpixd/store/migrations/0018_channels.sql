-- Channels beyond mail (issue 26): a subscriber's webhook, Slack or Teams URL, and each
-- message to one as an outbox row (claimed under a lease, retried, failed with its
-- reason), created in the transaction that records the revision it reports.
-- older releases: compatible
CREATE TABLE channels (
    id              INTEGER PRIMARY KEY,
    subscriber_id   INTEGER NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('webhook', 'slack', 'teams')),
    url             TEXT NOT NULL,  -- a secret: shown only as `shown_url`
    secret          TEXT NOT NULL,  -- the webhook's signing key (hex)
    -- verifying: added, its test message not yet answered 2xx; active; paused (by the
    -- operator or subscriber, or by jpixd after `pause_after_gone` 404/410s in a row)
    state           TEXT NOT NULL CHECK (state IN ('verifying', 'active', 'paused', 'removed')),
    paused_reason   TEXT,
    gone_count      INTEGER NOT NULL DEFAULT 0,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    verified_at     TEXT
);
CREATE INDEX channels_subscriber ON channels (subscriber_id);
CREATE INDEX channels_active ON channels (subscriber_id) WHERE state = 'active';
CREATE TABLE channel_messages (
    id              INTEGER PRIMARY KEY,
    channel_id      INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    purpose         TEXT NOT NULL CHECK (purpose IN ('notice', 'test')),
    notice_id       INTEGER,
    revision_id     INTEGER,
    state           TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'failed', 'skipped')),
    reason          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    not_before      TEXT NOT NULL,
    claimed_by      TEXT,
    lease_until     TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE INDEX channel_messages_queued ON channel_messages (not_before) WHERE state = 'queued';
CREATE INDEX channel_messages_channel ON channel_messages (channel_id, id);
