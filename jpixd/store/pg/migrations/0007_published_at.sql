-- As SQLite's 0016 (issue 25): NTT's own stated time of a notice, where it states one.
-- older releases: compatible
ALTER TABLE notices ADD COLUMN published_at timestamptz;
