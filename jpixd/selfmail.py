"""Mail that strangers can cause: sign-up confirmations and manage links. Pure rules.

Anybody on the internet can type an address into the sign-up or link form, so this mail
is bounded on every side before it is sent, and what comes back of it is judged apart
from notice mail:

- per mailbox: at most `mails_per_address_hour` to one mailbox, however its address is
  spelt (case, IDNA, a `+tag`, the dots a provider ignores);
- globally: at most `mails_per_hour` in all, so a flood of addresses cannot raise the
  account's volume or its bounce count beyond a small, known number;
- a mailbox that bounced or complained about such a mail gets no more of it;
- past `mail_bounce_limit` bounces and complaints of such mail within the guard's window,
  no more of it at all until the window has moved on (the operator is told).

Its bounces and complaints never suppress an address, never file a Backlog case and
never count in the guard that pauses notice mail (`jpixd.bounces.rules.decide`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from jpixd.config import WebConfig

# Providers that deliver `a.b.c@` to `abc@` (Gmail, and its old name).
_DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}
# A mailbox that bounced or complained about a self-service mail gets none for this long:
# a real owner who mistyped once can sign up again next month.
BOUNCED_MAILBOX_REST = timedelta(days=30)


def mailbox_key(email: str) -> str:
    """The mailbox an (already normalised: lower-case, IDNA) address delivers to, for
    limiting only: `victim+1@` and `victim+2@` are one inbox at nearly every provider;
    Gmail also ignores dots. Over-grouping a limit key costs nothing (a mail is refused
    that a separate mailbox would have had), under-grouping lets one inbox be bombed."""
    local, _, domain = email.rpartition("@")
    local = local.split("+", 1)[0] or local
    canonical = _DOTLESS_DOMAINS.get(domain)
    if canonical is not None:
        local, domain = local.replace(".", "") or local, canonical
    return f"{local}@{domain}"


@dataclass(frozen=True)
class Limits:
    per_mailbox_hour: int
    per_hour: int
    bounce_limit: int  # bounces and complaints of self-service mail within the window


def limits_of(cfg: WebConfig) -> Limits:
    return Limits(per_mailbox_hour=cfg.mails_per_address_hour, per_hour=cfg.mails_per_hour,
                  bounce_limit=cfg.mail_bounce_limit)


@dataclass(frozen=True)
class Counts:
    """What the store counted, in the same transaction as the row it may add."""

    mailbox_last_hour: int  # asked for this mailbox (queued or sent) in the last hour
    all_last_hour: int
    mailbox_bounced: bool  # bounced or complained within BOUNCED_MAILBOX_REST
    bounces_in_window: int  # all self-service bounces and complaints in the guard window


def refusal(counts: Counts, limits: Limits) -> str | None:
    """Why this mail must not be sent (a metric label), or None to send it."""
    if counts.bounces_in_window >= limits.bounce_limit:
        return "held"
    if counts.mailbox_bounced:
        return "bounced_before"
    if counts.mailbox_last_hour >= limits.per_mailbox_hour:
        return "rate_limited"
    if counts.all_last_hour >= limits.per_hour:
        return "global_limit"
    return None


REFUSALS = ("held", "bounced_before", "rate_limited", "global_limit")
