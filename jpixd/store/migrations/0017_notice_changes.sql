-- What a notice's latest report changed (jpixd.changes), kept on the notice as well as
-- with its revision (issue 25): the feeds show it for every notice on the board, and
-- reading it from each latest revision meant parsing whole contents, bodies and all.
-- older releases: compatible
ALTER TABLE notices ADD COLUMN changes TEXT NOT NULL DEFAULT '[]';
UPDATE notices SET changes = COALESCE((
    SELECT json_extract(r.content, '$.changes') FROM notice_revisions r
    WHERE r.notice_id = notices.id ORDER BY r.id DESC LIMIT 1), '[]');
