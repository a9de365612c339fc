-- When NTT says it posted or last updated a notice (掲載日時, 更新日時, an RSS pubDate),
-- where its page states one (issue 25): the board shows it beside jpixd's own time.
-- older releases: compatible
ALTER TABLE notices ADD COLUMN published_at TEXT;
