-- As SQLite's 0017 (issue 25): a notice's latest report's changes, on the notice.
-- older releases: compatible
ALTER TABLE notices ADD COLUMN changes jsonb NOT NULL DEFAULT '[]';
UPDATE notices n SET changes = COALESCE((
    SELECT r.content -> 'changes' FROM notice_revisions r
    WHERE r.notice_id = n.id ORDER BY r.id DESC LIMIT 1), '[]'::jsonb);
