"""What may be asked of a subscriber's channels, by the operator (API, console, CSV) or
by the subscriber (the manage page): the rules, shared. Pure.

A channel's URL is a secret (a Slack or Teams webhook URL is all it takes to post into
that chat): it is shown only as scheme, host and its last four characters. A webhook's
signing secret is shown once, when the channel is added (the receiver needs it)."""

from __future__ import annotations

import secrets
from typing import Any

from jpixd.channels import KINDS
from jpixd.channels.urls import UnsafeUrl, check_url, shown
from jpixd.records import Channel

# A subscriber's channels at most: each is a receiver a stranger can name (manage page).
MAX_PER_SUBSCRIBER = 5


class ChannelInvalid(ValueError):
    """What is wrong, field by field (kind, url)."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


def checked(kind: object, url: object, *, allow_http: bool) -> tuple[str, str]:
    """(kind, url) as given, if they may be used; else ChannelInvalid."""
    problems: dict[str, str] = {}
    if kind not in KINDS:
        problems["kind"] = f"must be one of {', '.join(KINDS)}"
    if not isinstance(url, str) or not url.strip():
        problems["url"] = "is required"
    else:
        try:
            check_url(url.strip(), allow_http=allow_http)
        except UnsafeUrl as exc:
            problems["url"] = str(exc)
    if problems:
        raise ChannelInvalid(problems)
    assert isinstance(kind, str) and isinstance(url, str)
    return kind, url.strip()


def room_for_one(existing: int) -> None:
    if existing >= MAX_PER_SUBSCRIBER:
        raise ChannelInvalid({"channels": f"at most {MAX_PER_SUBSCRIBER} channels a subscriber"})


def new_secret() -> str:
    """A webhook's signing key (hex, 256 bits)."""
    return secrets.token_hex(32)


def to_json(ch: Channel, *, with_secret: bool = False) -> dict[str, Any]:
    """A channel as the API shows it: its URL as shown, never whole."""
    out: dict[str, Any] = {
        "id": ch.id, "subscriber_id": ch.subscriber_id, "kind": ch.kind,
        "url": shown(ch.url), "state": ch.state, "paused_reason": ch.paused_reason,
        "gone_count": ch.gone_count, "last_status": ch.last_status,
        "last_error": ch.last_error, "created_at": ch.created_at.isoformat(),
        "verified_at": ch.verified_at.isoformat() if ch.verified_at else None}
    if with_secret and ch.kind == "webhook":
        out["secret"] = ch.secret
    return out
