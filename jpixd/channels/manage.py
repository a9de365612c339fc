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
    """What is wrong, field by field (kind, url, channels): `fields` in English (the API,
    the CLI), `codes` for the pages' Japanese (jpixd.web.words.CHANNEL_PROBLEMS)."""

    def __init__(self, fields: dict[str, str], codes: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields
        self.codes = codes


def checked(kind: object, url: object, *, allow_http: bool) -> tuple[str, str]:
    """(kind, url) as given, if they may be used; else ChannelInvalid."""
    problems: dict[str, str] = {}
    codes: dict[str, str] = {}
    if kind not in KINDS:
        problems["kind"], codes["kind"] = f"must be one of {', '.join(KINDS)}", "kind"
    if not isinstance(url, str) or not url.strip():
        problems["url"], codes["url"] = "is required", "required"
    else:
        try:
            check_url(url.strip(), allow_http=allow_http)
        except UnsafeUrl as exc:
            problems["url"], codes["url"] = str(exc), exc.code
    if problems:
        raise ChannelInvalid(problems, codes)
    assert isinstance(kind, str) and isinstance(url, str)
    return kind, url.strip()


def room_for_one(existing: int) -> None:
    if existing >= MAX_PER_SUBSCRIBER:
        raise ChannelInvalid({"channels": f"at most {MAX_PER_SUBSCRIBER} channels a subscriber"},
                             {"channels": "too_many"})


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


# --------------------------------------------------------------------------- CSV


def parse_cell(text: str, *, allow_http: bool) -> list[tuple[str, str]]:
    """A CSV `channels` cell: `kind=url` entries separated by ";" (as every list column
    is). An entry whose URL is shown as the export writes it (`…` and the last four
    characters) names the subscriber's existing channel: an export imports unchanged."""
    out: list[tuple[str, str]] = []
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        kind, sep, url = entry.partition("=")
        if not sep:
            raise _cell_invalid("entry", f"{entry[:60]!r} is not kind=url "
                                         "(e.g. slack=https://hooks.slack.com/…)")
        kind, url = kind.strip(), url.strip()
        if "…" in url:
            if kind not in KINDS:
                raise _cell_invalid("kind", f"{kind!r}: must be one of {', '.join(KINDS)}")
            out.append((kind, url))
            continue
        try:
            out.append(checked(kind, url, allow_http=allow_http))
        except ChannelInvalid as exc:
            raise _cell_invalid(next(iter(exc.codes.values())), f"{entry[:60]!r}: " + "; ".join(
                exc.fields.values())) from None
    room_for_one(len(out) - 1)  # a sixth is one too many
    return out


def _cell_invalid(code: str, message: str) -> ChannelInvalid:
    return ChannelInvalid({"channels": message}, {"channels": code})


def cell(channels: list[Channel]) -> str:
    """The export's `channels` cell: each URL as shown, never whole."""
    return ";".join(f"{c.kind}={shown(c.url)}" for c in channels)


def plan_import(existing: list[Channel], wanted: list[tuple[str, str]]
                ) -> tuple[list[tuple[str, str]], list[Channel]]:
    """(channels to add, channels to remove) to make `existing` what the cell says: an
    entry matches a channel of its kind with the same URL, or with the same URL as
    shown; every channel no entry matches is removed."""
    left = list(existing)
    add: list[tuple[str, str]] = []
    for kind, url in wanted:
        match = next((c for c in left if c.kind == kind and
                      (c.url == url or ("…" in url and shown(c.url) == url))), None)
        if match is not None:
            left.remove(match)
        elif "…" in url:
            raise _cell_invalid("unknown_shown", f"{kind}={url}: no such channel to keep "
                                "(a shown URL names an existing channel; give the "
                                "whole URL to add one)")
        else:
            add.append((kind, url))
    return add, left
