-- jpixd on PostgreSQL (issue 16): the same domain as the SQLite store's migrations
-- 0001–0011, with PostgreSQL's own types: times as timestamptz, lists and documents as
-- jsonb, flags as boolean, ids from identity columns. Numbered migrations of its own
-- follow from here; `jpixd migrate` applies them under an advisory lock, so that hosts
-- starting together never apply one twice.

CREATE TABLE source_state (
    source              text PRIMARY KEY,
    etag                text,
    last_modified       text,
    permanent_url       text,
    permanent_for       text,
    baseline_done       boolean NOT NULL DEFAULT false,
    last_attempt_at     timestamptz,
    last_success_at     timestamptz,
    last_error_at       timestamptz,
    last_error          text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    next_poll_at        timestamptz,
    last_result         text,
    last_items          integer,
    layout_warning      text,
    detail_error        text
);

CREATE TABLE notices (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text NOT NULL,
    external_id     text NOT NULL,
    carrier         text NOT NULL CHECK (carrier IN ('east', 'west')),
    kind            text NOT NULL CHECK (kind IN ('construction', 'failure')),
    status          text NOT NULL,
    title           text NOT NULL,
    body            text NOT NULL DEFAULT '',
    starts_at       timestamptz,
    ends_at         timestamptz,
    prefectures     jsonb NOT NULL DEFAULT '[]',
    localities      jsonb NOT NULL DEFAULT '[]',
    services        jsonb NOT NULL DEFAULT '[]',
    windows         jsonb NOT NULL DEFAULT '[]',
    url             text,
    report_number   integer,
    revision        text NOT NULL,
    fingerprint     text,
    first_seen      timestamptz NOT NULL,
    last_changed    timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL,
    UNIQUE (source, external_id)
);
CREATE INDEX notices_kind_status ON notices (kind, status);
CREATE INDEX notices_last_changed ON notices (last_changed);
CREATE INDEX notices_source_status ON notices (source, status);
CREATE INDEX notices_prefectures ON notices USING gin (prefectures);

CREATE TABLE notice_keys (
    source          text NOT NULL,
    key             text NOT NULL,
    notice_id       bigint NOT NULL REFERENCES notices (id),
    fingerprint     text,
    report_number   integer,
    PRIMARY KEY (source, key)
);
CREATE INDEX notice_keys_notice ON notice_keys (notice_id);

CREATE TABLE notice_revisions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notice_id   bigint NOT NULL REFERENCES notices (id),
    revision    text NOT NULL,
    change      text NOT NULL,
    content     jsonb NOT NULL,
    mailed      boolean NOT NULL DEFAULT true,
    seen_at     timestamptz NOT NULL
);
CREATE INDEX notice_revisions_notice ON notice_revisions (notice_id, id);

CREATE TABLE subscribers (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email           text NOT NULL,
    name            text NOT NULL DEFAULT '',
    organization    text NOT NULL DEFAULT '',
    carriers        jsonb NOT NULL DEFAULT '["east", "west"]',
    prefectures     jsonb NOT NULL DEFAULT '[]',
    kinds           jsonb NOT NULL DEFAULT '["construction", "failure"]',
    services        jsonb NOT NULL DEFAULT '[]',
    windows         jsonb NOT NULL DEFAULT '["day", "night", "late_night"]',
    failure_respects_windows boolean NOT NULL DEFAULT false,
    charset         text,
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status IN ('pending', 'active', 'suppressed', 'unsubscribed')),
    paused          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz
);
-- One live subscriber per address; deleted rows keep their history.
CREATE UNIQUE INDEX subscribers_email_live ON subscribers (email) WHERE deleted_at IS NULL;

CREATE TABLE subscriber_changes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscriber_id   bigint NOT NULL REFERENCES subscribers (id),
    at              timestamptz NOT NULL,
    actor           text NOT NULL,
    action          text NOT NULL,
    detail          text NOT NULL DEFAULT ''
);
CREATE INDEX subscriber_changes_by_subscriber ON subscriber_changes (subscriber_id, id);

CREATE TABLE deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    revision_id     bigint NOT NULL REFERENCES notice_revisions (id),
    notice_id       bigint NOT NULL REFERENCES notices (id),
    subscriber_id   bigint NOT NULL REFERENCES subscribers (id),
    email           text NOT NULL,
    purpose         text NOT NULL DEFAULT 'notice' CHECK (purpose IN ('notice', 'reminder')),
    slot            text NOT NULL DEFAULT '',
    priority        integer NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent', 'retry', 'failed',
                                     'suppressed', 'skipped', 'shadow')),
    reason          text,
    not_before      timestamptz NOT NULL,
    first_due_at    timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    claimed_at      timestamptz,
    claimed_by      text,
    lease_until     timestamptz,
    sent_at         timestamptz,
    transport       text,
    message_id      text,
    ses_message_id  text,
    last_error      text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    UNIQUE (revision_id, subscriber_id, purpose, slot)
);
-- The claim (FOR UPDATE SKIP LOCKED on several hosts): due rows by priority then age.
CREATE INDEX deliveries_due ON deliveries (priority, not_before, id)
    WHERE state IN ('pending', 'retry');
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE state = 'sending';
CREATE INDEX deliveries_state ON deliveries (state);
CREATE INDEX deliveries_notice ON deliveries (notice_id, state);
CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id, state);
CREATE INDEX deliveries_ses_message ON deliveries (ses_message_id)
    WHERE ses_message_id IS NOT NULL;
CREATE INDEX deliveries_waiting ON deliveries (first_due_at)
    WHERE state IN ('pending', 'retry', 'sending');
CREATE INDEX deliveries_sent_at ON deliveries (sent_at) WHERE state = 'sent';

CREATE TABLE shadow_mail (
    delivery_id     bigint PRIMARY KEY REFERENCES deliveries (id),
    subject         text NOT NULL,
    message         bytea NOT NULL,
    charset         text NOT NULL,
    rendered_at     timestamptz NOT NULL
);

CREATE TABLE mail_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_key       text NOT NULL UNIQUE,
    type            text NOT NULL,
    subtype         text,
    recipient       text NOT NULL,
    ses_message_id  text,
    delivery_id     bigint REFERENCES deliveries (id),
    counted_in_rate boolean NOT NULL DEFAULT true,
    diagnostic      text,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    raw             text NOT NULL
);
CREATE INDEX mail_events_recipient ON mail_events (recipient, occurred_at);
CREATE INDEX mail_events_type_time ON mail_events (type, occurred_at);

CREATE TABLE suppressions (
    email           text PRIMARY KEY,
    reason          text NOT NULL,
    first_event_at  timestamptz NOT NULL,
    last_event_at   timestamptz NOT NULL,
    event_id        bigint REFERENCES mail_events (id),
    created_at      timestamptz NOT NULL,
    lifted_at       timestamptz,
    lifted_by       text
);

CREATE TABLE tickets (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_key        text NOT NULL UNIQUE,
    kind            text NOT NULL CHECK (kind IN ('bounce', 'guard')),
    email           text,
    marker          text NOT NULL UNIQUE,
    state           text NOT NULL DEFAULT 'intent'
                    CHECK (state IN ('intent', 'open', 'closing', 'closed', 'gone')),
    issue_id        bigint,
    issue_key       text,
    summary         text NOT NULL,
    description     text NOT NULL,
    priority        text NOT NULL DEFAULT 'normal',
    close_reason    text,
    event_id        bigint REFERENCES mail_events (id),
    last_event_at   timestamptz,
    attempted_at    timestamptz,
    last_error      text,
    next_try_at     timestamptz,
    tries           integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    opened_at       timestamptz,
    closed_at       timestamptz,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX tickets_state ON tickets (state);
-- One open case per bounced address; a repeat bounce comments on it.
CREATE UNIQUE INDEX tickets_open_bounce ON tickets (email)
    WHERE kind = 'bounce' AND state IN ('intent', 'open');

CREATE TABLE ticket_comments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id   bigint NOT NULL REFERENCES tickets (id),
    content     text NOT NULL,
    marker      text,
    created_at  timestamptz NOT NULL,
    attempted_at timestamptz,
    posted_at   timestamptz,
    dropped_at  timestamptz
);
CREATE INDEX ticket_comments_pending ON ticket_comments (ticket_id) WHERE posted_at IS NULL;

CREATE TABLE quarantine (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    origin      text NOT NULL,
    ref         text,
    reason      text NOT NULL,
    payload     text NOT NULL,
    digest      text,
    received_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX quarantine_digest ON quarantine (origin, digest);

CREATE TABLE control (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- The archive's outbox. An identity never reuses a number; it is insert order, which on
-- several hosts can differ from commit order by the transactions in flight at once.
CREATE TABLE archive_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    record      jsonb NOT NULL,
    created_at  timestamptz NOT NULL
);

-- Several hosts (issue 16): who is alive, for leases and the shared send rate.
CREATE TABLE hosts (
    name        text PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    seen_at     timestamptz NOT NULL
);
