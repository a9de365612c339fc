-- Addresses are compared without regard to case from now on (security probe L6: a
-- bounce for U8@ISP-B.EXAMPLE.JP left u8@isp-b.example.jp active). Existing rows are
-- brought to lower case where that makes no two live subscribers one.
UPDATE subscribers SET email = lower(email)
 WHERE email <> lower(email)
   AND NOT EXISTS (SELECT 1 FROM subscribers s2
                    WHERE s2.email = lower(subscribers.email) AND s2.id <> subscribers.id
                      AND s2.deleted_at IS NULL);
INSERT OR IGNORE INTO suppressions (email, reason, first_event_at, last_event_at, event_id,
                                    created_at, lifted_at, lifted_by)
    SELECT lower(email), reason, first_event_at, last_event_at, event_id, created_at,
           lifted_at, lifted_by
      FROM suppressions WHERE email <> lower(email);
DELETE FROM suppressions WHERE email <> lower(email);
UPDATE deliveries SET email = lower(email) WHERE email <> lower(email);
UPDATE mail_events SET recipient = lower(recipient) WHERE recipient <> lower(recipient);
