"""The crash barrier around one unit of work: a feed poll, a feed item, an SQS message, a
Backlog case, a delivery. Whatever an input makes our code raise, that unit is
quarantined (verbatim payload, reason, an incident id that is also in the log line with
the traceback), counted in `jpixd_unit_errors_total{unit}`, logged once, and the loop
goes on. Loops crash only for bugs in the loop itself, never for what one input held.

`CancelledError` is a BaseException and passes through: shutdown is not an input. Nor
is a full disk (or a read-only one, or no memory): that error goes on up to the
supervisor, which waits it out with the loop unready, instead of quarantining an input
that did nothing wrong (and whose quarantine write would fail the same way).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Protocol

import structlog

from jpixd.exhaustion import exhaustion
from jpixd.metrics import Metrics

log = structlog.get_logger("jpixd.barrier")
MAX_PAYLOAD = 65536


class Quarantine(Protocol):
    async def quarantine(self, *, origin: str, ref: str, reason: str, payload: str,
                         now: datetime, incident: str | None = None) -> bool: ...


def describe(exc: BaseException) -> str:
    """`TypeName: message`, bounded (an exception can carry a whole input)."""
    text = str(exc)
    if len(text) > 300:
        text = text[:300] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def contain(store: Quarantine, metrics: Metrics, exc: Exception, *, unit: str,
                  origin: str, ref: str, payload: str, now: datetime) -> str:
    """Quarantine the unit, count it, log it (with its traceback) the first time this
    exact unit fails this way; return the incident id."""
    if exhaustion(exc):
        raise exc
    incident = secrets.token_hex(6)
    metrics.unit_errors.labels(unit).inc()
    reason = f"unexpected {describe(exc)}"
    new = await store.quarantine(origin=origin, ref=ref[:500], reason=reason,
                                 payload=payload[:MAX_PAYLOAD], now=now, incident=incident)
    if new:
        log.error("unit of work failed: quarantined, the loop goes on", unit=unit, ref=ref[:200],
                  incident=incident, error=describe(exc), exc_info=exc)
    else:  # the same input failing the same way on every poll: logged once
        log.debug("unit of work failed again", unit=unit, ref=ref[:200], error=describe(exc))
    return incident
