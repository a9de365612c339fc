"""Rules of the outbox that are not SQL: which deliveries an operator may send again, and
how. Pure; every store, the admin API and the console read them from here."""

from __future__ import annotations

from enum import StrEnum

from jpixd.model import DeliveryState


class Retry(StrEnum):
    RESEND = "resend"  # ended without being sent: due now, attempts counted afresh
    HURRY = "hurry"  # still waiting (a delivery window, a reminder's time): due now


def retry_action(state: DeliveryState) -> Retry | None:
    """What "send it now" does to a delivery in `state`; None: it cannot be sent again
    (sent, or being sent, or a shadow run's, which the cut-over closed for good)."""
    if state in (DeliveryState.FAILED, DeliveryState.SKIPPED, DeliveryState.RETRY,
                 DeliveryState.SUPPRESSED):
        return Retry.RESEND
    if state == DeliveryState.PENDING:
        return Retry.HURRY
    return None
