-- The whole domain of SPEC §2. Times are UTC ISO 8601 text of fixed width
-- ("2026-12-03T00:00:00.000000+00:00") so that text order is time order.
-- Lists (prefectures, services, …) are JSON arrays in TEXT columns.

-- Per-source poll state: validators, redirects, backoff, baseline.
CREATE TABLE source_state (
    source              TEXT PRIMARY KEY,
    etag                TEXT,
    last_modified       TEXT,
    permanent_url       TEXT,
    baseline_done       INTEGER NOT NULL DEFAULT 0,
    last_attempt_at     TEXT,
    last_success_at     TEXT,
    last_error_at       TEXT,
    last_error          TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    next_poll_at        TEXT
);

CREATE TABLE notices (
    id              INTEGER PRIMARY KEY,
    source          TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    carrier         TEXT NOT NULL CHECK (carrier IN ('east', 'west')),
    kind            TEXT NOT NULL CHECK (kind IN ('construction', 'failure')),
    status          TEXT NOT NULL,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL DEFAULT '',
    starts_at       TEXT,
    ends_at         TEXT,
    prefectures     TEXT NOT NULL DEFAULT '[]',
    localities      TEXT NOT NULL DEFAULT '[]',
    services        TEXT NOT NULL DEFAULT '[]',
    url             TEXT,
    report_number   INTEGER,
    revision        TEXT NOT NULL,
    first_seen      TEXT NOT NULL,
    last_changed    TEXT NOT NULL,
    last_seen       TEXT NOT NULL,
    UNIQUE (source, external_id)
);
CREATE INDEX notices_kind_status ON notices (kind, status);
CREATE INDEX notices_last_changed ON notices (last_changed);

-- Every distinct revision a notice went through; `change` is what it meant to a reader.
CREATE TABLE notice_revisions (
    id          INTEGER PRIMARY KEY,
    notice_id   INTEGER NOT NULL REFERENCES notices (id),
    revision    TEXT NOT NULL,
    change      TEXT NOT NULL,
    content     TEXT NOT NULL,
    mailed      INTEGER NOT NULL DEFAULT 1,
    seen_at     TEXT NOT NULL
);
CREATE INDEX notice_revisions_notice ON notice_revisions (notice_id, id);

CREATE TABLE subscribers (
    id              INTEGER PRIMARY KEY,
    email           TEXT NOT NULL,
    name            TEXT NOT NULL DEFAULT '',
    organization    TEXT NOT NULL DEFAULT '',
    carriers        TEXT NOT NULL DEFAULT '["east","west"]',
    prefectures     TEXT NOT NULL DEFAULT '[]',
    kinds           TEXT NOT NULL DEFAULT '["construction","failure"]',
    services        TEXT NOT NULL DEFAULT '[]',
    windows         TEXT NOT NULL DEFAULT '["day","night","late_night"]',
    failure_respects_windows INTEGER NOT NULL DEFAULT 0,
    charset         TEXT,
    status          TEXT NOT NULL DEFAULT 'active'
                    CHECK (status IN ('pending', 'active', 'suppressed', 'unsubscribed')),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    deleted_at      TEXT
);
-- One live subscriber per address; deleted rows keep their history.
CREATE UNIQUE INDEX subscribers_email_live ON subscribers (email) WHERE deleted_at IS NULL;

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    revision_id     INTEGER NOT NULL REFERENCES notice_revisions (id),
    notice_id       INTEGER NOT NULL REFERENCES notices (id),
    subscriber_id   INTEGER NOT NULL REFERENCES subscribers (id),
    email           TEXT NOT NULL,
    purpose         TEXT NOT NULL DEFAULT 'notice' CHECK (purpose IN ('notice', 'reminder')),
    -- '' for the notice itself; for a reminder its offset before the start ("86400s").
    slot            TEXT NOT NULL DEFAULT '',
    priority        INTEGER NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent', 'retry', 'failed',
                                     'suppressed', 'skipped')),
    reason          TEXT,
    not_before      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    claimed_at      TEXT,
    sent_at         TEXT,
    transport       TEXT,
    message_id      TEXT,
    ses_message_id  TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (revision_id, subscriber_id, purpose, slot)
);
-- The sender's claim query: due rows by priority then age. Partial, so that the sent
-- rows (nearly all of them, in time) are not in it; queries repeat its WHERE exactly.
CREATE INDEX deliveries_due ON deliveries (priority, not_before, id)
    WHERE state IN ('pending', 'retry');
CREATE INDEX deliveries_state ON deliveries (state);
CREATE INDEX deliveries_notice ON deliveries (notice_id, state);
CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id, state);
-- Only sent rows have an SES id; new rows cost this index nothing.
CREATE INDEX deliveries_ses_message ON deliveries (ses_message_id)
    WHERE ses_message_id IS NOT NULL;

-- SES notifications; event_key = feedbackId|recipient (or SNS MessageId|recipient).
CREATE TABLE mail_events (
    id              INTEGER PRIMARY KEY,
    event_key       TEXT NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    subtype         TEXT,
    recipient       TEXT NOT NULL,
    ses_message_id  TEXT,
    delivery_id     INTEGER REFERENCES deliveries (id),
    counted_in_rate INTEGER NOT NULL DEFAULT 1,
    diagnostic      TEXT,
    occurred_at     TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    raw             TEXT NOT NULL
);
CREATE INDEX mail_events_recipient ON mail_events (recipient, occurred_at);
CREATE INDEX mail_events_type_time ON mail_events (type, occurred_at);

CREATE TABLE suppressions (
    email           TEXT PRIMARY KEY,
    reason          TEXT NOT NULL,
    first_event_at  TEXT NOT NULL,
    last_event_at   TEXT NOT NULL,
    event_id        INTEGER REFERENCES mail_events (id),
    created_at      TEXT NOT NULL,
    lifted_at       TEXT,
    lifted_by       TEXT
);

-- One row per Backlog case. The row (with its marker) is committed before the create
-- call, so a crash between Backlog's 201 and our commit is recovered by a marker search.
CREATE TABLE tickets (
    id              INTEGER PRIMARY KEY,
    case_key        TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL CHECK (kind IN ('bounce', 'guard')),
    email           TEXT,
    marker          TEXT NOT NULL UNIQUE,
    state           TEXT NOT NULL DEFAULT 'intent'
                    CHECK (state IN ('intent', 'open', 'closing', 'closed', 'gone')),
    issue_id        INTEGER,
    issue_key       TEXT,
    summary         TEXT NOT NULL,
    description     TEXT NOT NULL,
    priority        TEXT NOT NULL DEFAULT 'normal',
    close_reason    TEXT,
    created_at      TEXT NOT NULL,
    opened_at       TEXT,
    closed_at       TEXT,
    updated_at      TEXT NOT NULL
);
CREATE INDEX tickets_state ON tickets (state);

-- Comments owed to a ticket (repeat bounces, lifted suppressions): an outbox.
CREATE TABLE ticket_comments (
    id          INTEGER PRIMARY KEY,
    ticket_id   INTEGER NOT NULL REFERENCES tickets (id),
    content     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    posted_at   TEXT
);
CREATE INDEX ticket_comments_pending ON ticket_comments (ticket_id) WHERE posted_at IS NULL;

-- Whatever could not be understood, verbatim, with why.
CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY,
    origin      TEXT NOT NULL,
    ref         TEXT,
    reason      TEXT NOT NULL,
    payload     TEXT NOT NULL,
    received_at TEXT NOT NULL
);

-- Small pieces of process-wide state (sending pause, guard window start), as JSON.
CREATE TABLE control (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
