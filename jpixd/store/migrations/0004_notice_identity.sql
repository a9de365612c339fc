-- One notice per incident (issue 11): every key under which a source has shown a
-- notice (its first detail URL, a 第N報 at a new URL, a row key) points at the one
-- notice; the list fingerprint (NTT West) is kept per key, since each key is a list item.
CREATE TABLE notice_keys (
    source          TEXT NOT NULL,
    key             TEXT NOT NULL,
    notice_id       INTEGER NOT NULL REFERENCES notices (id),
    fingerprint     TEXT,
    report_number   INTEGER,
    PRIMARY KEY (source, key)
);
CREATE INDEX notice_keys_notice ON notice_keys (notice_id);
INSERT INTO notice_keys (source, key, notice_id, fingerprint, report_number)
    SELECT source, external_id, id, fingerprint, report_number FROM notices;

-- Multi-night work, 各日 and 予備日: every window, as JSON.
ALTER TABLE notices ADD COLUMN windows TEXT NOT NULL DEFAULT '[]';
CREATE INDEX notices_source_status ON notices (source, status);

-- What the last poll of a source concluded, for operators (GET /admin/v1/sources).
ALTER TABLE source_state ADD COLUMN last_result TEXT;
ALTER TABLE source_state ADD COLUMN last_items INTEGER;
ALTER TABLE source_state ADD COLUMN layout_warning TEXT;
ALTER TABLE source_state ADD COLUMN detail_error TEXT;
