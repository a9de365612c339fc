"""Channels beyond mail (issue 26): what a webhook, Slack or Microsoft Teams receives
(`payloads`), how it is signed (`signing`), where it may be sent (`urls`) and one
delivery attempt (`post`), pure where they can be; the loop that sends each message from
its outbox row (`sender`) and what decides an outcome's next step (`outcomes`)."""

# What a channel is (its `kind`), and what each attempt to send to one came to (the
# metric's `result`): sent; retry (5xx, 429, a timeout); gone (404 or 410); failed (given
# up after max_attempts, or refused: a 4xx, an address not allowed); skipped (its
# channel was paused or removed before it went).
KINDS = ("webhook", "slack", "teams")
RESULTS = ("sent", "retry", "gone", "failed", "skipped")
