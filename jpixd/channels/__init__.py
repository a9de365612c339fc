"""Channels beyond mail (issue 26): what a webhook, Slack or Microsoft Teams receives
(`payloads`), how it is signed (`signing`), where it may be sent (`urls`) and one
delivery attempt (`post`). Pure where they can be; the outbox wiring is still to come."""
