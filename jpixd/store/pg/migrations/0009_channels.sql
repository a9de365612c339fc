-- As SQLite's 0018 (issue 26): channels beyond mail and their messages as outbox rows.
-- older releases: compatible
CREATE TABLE channels (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscriber_id   bigint NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('webhook', 'slack', 'teams')),
    url             text NOT NULL,
    secret          text NOT NULL,
    state           text NOT NULL CHECK (state IN ('verifying', 'active', 'paused', 'removed')),
    paused_reason   text,
    gone_count      integer NOT NULL DEFAULT 0,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    verified_at     timestamptz
);
CREATE INDEX channels_subscriber ON channels (subscriber_id);
CREATE INDEX channels_active ON channels (subscriber_id) WHERE state = 'active';
CREATE TABLE channel_messages (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id      bigint NOT NULL,
    kind            text NOT NULL,
    purpose         text NOT NULL CHECK (purpose IN ('notice', 'test')),
    notice_id       bigint,
    revision_id     bigint,
    state           text NOT NULL CHECK (state IN ('queued', 'sent', 'failed', 'skipped')),
    reason          text,
    attempts        integer NOT NULL DEFAULT 0,
    not_before      timestamptz NOT NULL,
    claimed_by      text,
    lease_until     timestamptz,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    sent_at         timestamptz
);
CREATE INDEX channel_messages_queued ON channel_messages (not_before) WHERE state = 'queued';
CREATE INDEX channel_messages_channel ON channel_messages (channel_id, id);
