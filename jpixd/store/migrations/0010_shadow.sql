-- Shadow mode (issue 15): `jpixd run --shadow` renders every mail and keeps it instead of
-- sending it; its deliveries end as 'shadow'. Widening a CHECK needs no new table: the
-- documented way (sqlite.org/lang_altertable.html §7) is to rewrite the stored schema
-- text and bump the schema version, safe because every existing row satisfies the wider
-- rule. `PRAGMA jpixd_bump_schema_version` is jpixd's migration runner's own directive.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql, '''suppressed'', ''skipped'')', '''suppressed'', ''skipped'', ''shadow'')') WHERE type = 'table' AND name = 'deliveries';
PRAGMA jpixd_bump_schema_version;
PRAGMA writable_schema = OFF;
CREATE TABLE shadow_mail (
    delivery_id     INTEGER PRIMARY KEY REFERENCES deliveries (id),
    subject         TEXT NOT NULL,
    message         BLOB NOT NULL,
    charset         TEXT NOT NULL,
    rendered_at     TEXT NOT NULL
);
