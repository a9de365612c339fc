"""What an SES event means for its address, and whether the account is at risk. Pure.

SES reviews an account at a 5 % bounce rate or 0.1 % complaint rate and may pause it at
10 % / 0.5 %; the guard pauses our sending well before (config: pause_* below the review
thresholds, checked at load). Rates count hard bounces and complaints over sends in
`guard_window`, and only once `guard_min_volume` mails were sent: three bounces in the
first ten mails of the day say little. Mail to addresses on SES's account suppression
list does not count, as SES does not count it either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jpixd.bounces.parse import MailEvent
from jpixd.config import BouncesConfig
from jpixd.model import SendingState


@dataclass(frozen=True)
class Decision:
    suppress: bool = False
    unsubscribe: bool = False  # complaints: the subscriber said stop
    counted: bool = False  # counts towards the guard's bounce or complaint rate
    reason: str | None = None
    # Self-service mail's event (a confirmation, a manage link): counted apart, never a
    # suppression, never a Backlog case (jpixd.selfmail).
    self_service: bool = False


def decide(event: MailEvent, soft_bounces_in_window: int, cfg: BouncesConfig, *,
           self_service: bool = False) -> Decision:
    """`soft_bounces_in_window` includes this event when it is a soft bounce.
    `self_service`: the event is of a mail a stranger could have caused (a sign-up's
    confirmation): it counts for that mail's own limit only. A sign-up address that
    bounces simply stays unconfirmed; an active subscriber's address that really bounces
    is judged by the next notice mail it gets."""
    if self_service:
        counted = event.type == "Complaint" or event.bounce_type == "Permanent"
        return Decision(counted=counted and event.bounce_subtype != "OnAccountSuppressionList",
                        self_service=True, reason="self-service mail: counted apart")
    if event.type == "Bounce":
        if event.bounce_subtype == "OnAccountSuppressionList":
            return Decision(suppress=True, reason="on the SES account suppression list")
        if event.bounce_type == "Permanent":
            return Decision(suppress=True, counted=True,
                            reason=f"permanent bounce ({event.subtype})")
        if soft_bounces_in_window >= cfg.soft_bounce_limit:
            days = cfg.soft_bounce_window.total_seconds() / 86400
            return Decision(suppress=True, reason=f"{soft_bounces_in_window} soft bounces "
                                                  f"within {days:g} days ({event.subtype})")
        return Decision()
    if event.type == "Complaint":
        return Decision(suppress=True, unsubscribe=True, counted=True,
                        reason=f"complaint ({event.subtype or 'no feedback report'})")
    return Decision()


def is_soft_bounce(event: MailEvent) -> bool:
    return event.type == "Bounce" and event.bounce_type in ("Transient", "Undetermined")


@dataclass(frozen=True)
class Verdict:
    level: str  # "ok" | "warn" | "pause"
    bounce_rate: float
    complaint_rate: float
    sent: int
    reason: str


def guard_since(now: datetime, cfg: BouncesConfig, sending: SendingState) -> datetime:
    """Where the guard's window starts: `guard_window` ago, or the last resume when that
    is later (a resume starts the count afresh)."""
    since = now - cfg.guard_window
    if sending.window_start is not None and sending.window_start > since:
        return sending.window_start
    return since


def judge(sent: int, bounces: int, complaints: int, cfg: BouncesConfig) -> Verdict:
    bounce_rate = bounces / sent if sent else 0.0
    complaint_rate = complaints / sent if sent else 0.0
    if sent < cfg.guard_min_volume:
        return Verdict("ok", bounce_rate, complaint_rate, sent,
                       f"{sent} sent, below the {cfg.guard_min_volume} needed to judge")
    figures = (f"bounce rate {bounce_rate:.2%} ({bounces}/{sent}), complaint rate "
               f"{complaint_rate:.3%} ({complaints}/{sent})")
    if bounce_rate >= cfg.pause_bounce_rate or complaint_rate >= cfg.pause_complaint_rate:
        return Verdict("pause", bounce_rate, complaint_rate, sent, f"paused by the guard: "
                       f"{figures}; limits {cfg.pause_bounce_rate:.2%} / "
                       f"{cfg.pause_complaint_rate:.3%}")
    if bounce_rate >= cfg.warn_bounce_rate or complaint_rate >= cfg.warn_complaint_rate:
        return Verdict("warn", bounce_rate, complaint_rate, sent, f"warning: {figures}")
    return Verdict("ok", bounce_rate, complaint_rate, sent, figures)
