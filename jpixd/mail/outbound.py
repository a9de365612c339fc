"""The one way out: the transport, the token bucket and the whole rate policy.

Every mail jpixd sends goes through `Outbound.send` after `Outbound.acquire`: the
sender's notice mail and reminders, and the self-service pages' confirmations and manage
links. So the SES account sees one rate however many kinds of mail there are, every send
is counted in one place (`jpixd_emails_sent_total`, its duration, its failures), and
the rate is decided by one rule (`rate_policy`), the same at start and on every reload.

The rate is the account's (the config's number, or SES's MaxSendRate × rate_safety when
"auto"), shared by the hosts alive (several hosts), halved by a throttle and recovered
by the bucket. The gauge reads the bucket itself at each scrape.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import structlog

from jpixd.config import SesConfig
from jpixd.mail.bucket import TokenBucket
from jpixd.mail.render import Rendered
from jpixd.mail.transports import SendError, Transport
from jpixd.metrics import Metrics
from jpixd.model import SendingState

if TYPE_CHECKING:  # the SES client is imported only by a daemon that sends through SES
    from jpixd.mail.transports.ses import Quota, SesTransport

log = structlog.get_logger("jpixd.sender")

# `max_send_rate = "auto"` with an SMTP server that is not SES: a rate any mail server
# takes from one client, instead of no limit at all.
DEFAULT_SMTP_RATE = 10.0
# "auto" on SES before its quota has been read: the sandbox's rate, safe for any account.
SES_STARTING_RATE = 1.0


@dataclass(frozen=True)
class RatePolicy:
    account: float | None  # the account's rate to use now (None: no limit)
    follows_quota: bool  # "auto" on SES: each quota read sets MaxSendRate × safety
    safety: float = 0.9


def rate_policy(ses: SesConfig, transport: str, reads_quota: bool) -> RatePolicy:
    """The whole rule: a number is the rate; "auto" follows SES's quota where it can be
    read, is a plain SMTP server's polite default, and no limit for files."""
    if ses.max_send_rate != "auto":
        return RatePolicy(float(ses.max_send_rate), False, ses.rate_safety)
    if reads_quota:
        return RatePolicy(SES_STARTING_RATE, True, ses.rate_safety)
    if transport == "smtp":
        return RatePolicy(DEFAULT_SMTP_RATE, False, ses.rate_safety)
    return RatePolicy(None, False, ses.rate_safety)


class SwitchStore(Protocol):
    async def sending_state(self) -> SendingState: ...
    async def set_sending(self, *, paused: bool, reason: str | None, actor: str,
                          now: datetime) -> SendingState: ...


class SendingSwitch:
    """Pause and resume of all sending: the one place that changes them (an operator,
    the bounce-rate guard, an account SES will not let send), reads them (at most twice
    a second: a pause stops new sends within a second without a database read per mail)
    and shows them (`jpixd_sending_paused`)."""

    def __init__(self, store: SwitchStore, metrics: Metrics,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store, self.metrics, self.monotonic = store, metrics, monotonic
        self._paused = False
        self._read_at = -1e9

    async def paused(self) -> bool:
        if self.monotonic() - self._read_at > 0.5:
            await self.state()
        return self._paused

    async def state(self) -> SendingState:
        """Read now (the gauge follows: every host shows what the database says)."""
        state = await self.store.sending_state()
        self._note(state)
        return state

    def changed_elsewhere(self) -> None:
        """Another host, or a command, changed it: read it afresh at the next look."""
        self._read_at = -1e9

    async def set(self, *, paused: bool, reason: str | None, actor: str,
                  now: datetime) -> SendingState:
        state = await self.store.set_sending(paused=paused, reason=reason, actor=actor, now=now)
        self._note(state)
        return state

    def _note(self, state: SendingState) -> None:
        self._paused, self._read_at = state.paused, self.monotonic()
        self.metrics.sending_paused.set(1 if state.paused else 0)


def rate_gauge(rate: float | None) -> float:
    """No limit is +Inf on the gauge, not 0 (which reads as "sending nothing")."""
    return math.inf if rate is None else rate


class Outbound:
    def __init__(self, transport: Transport, bucket: TokenBucket, metrics: Metrics,
                 policy: RatePolicy, switch: SendingSwitch, *,
                 quota_from: SesTransport | None = None, quota_refresh: float = 300.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.transport = transport
        self.switch = switch  # pause and resume
        self.bucket = bucket
        self.metrics = metrics
        self.policy = policy
        self.quota_from = quota_from  # SES: its 24-hour quota, and the rate if "auto"
        self.quota_refresh = quota_refresh
        self.monotonic = monotonic
        self.quota: Quota | None = None
        self.sent_since_quota = 0
        self._quota_at = -1e9
        bucket.set_rate(policy.account)
        metrics.transport_series(transport.name)
        # This transport's series, found once (a label look-up is a microsecond a mail).
        self._sent = metrics.emails_sent.labels(transport.name)
        self._duration = metrics.send_duration.labels(transport.name)
        metrics.send_rate_limit.set_function(lambda: rate_gauge(self.bucket.rate))

    @property
    def name(self) -> str:
        return self.transport.name

    # ------------------------------------------------------------------ the rate

    def apply(self, policy: RatePolicy) -> None:
        """A reload. A rate that follows SES's quota keeps the one it read (and reads
        it again at once if it did not follow before); any other is set as it is."""
        was_following = self.policy.follows_quota
        self.policy = policy
        if policy.follows_quota and was_following:
            return
        self.bucket.set_rate(policy.account)
        if policy.follows_quota:
            self._quota_at = -1e9

    def set_hosts(self, hosts: int) -> None:
        """Several hosts: this host's part of the account's rate."""
        self.bucket.set_hosts(hosts)

    def throttled(self) -> None:
        """A throttling answer (here, or another host's): halve the rate now."""
        self.bucket.penalize()

    def read_quota_again(self) -> None:
        """At the next look, whatever the interval (a sender restarted after a crash)."""
        self._quota_at = -1e9

    async def refresh_quota(self) -> None:
        """SES's quota, read every `quota_refresh` seconds when it can be."""
        if self.quota_from is None or self.monotonic() - self._quota_at < self.quota_refresh:
            return
        self._quota_at = self.monotonic()
        try:
            quota = await self.quota_from.quota()
        except Exception as exc:  # any AWS/network error: keep the last known quota
            log.warning("cannot read the SES quota; keeping the last one", error=str(exc))
            return
        self.quota, self.sent_since_quota = quota, 0
        self.metrics.ses_quota_remaining.set(quota.remaining)
        if self.policy.follows_quota:
            self.bucket.set_rate(quota.max_rate * self.policy.safety)
        log.info("SES quota read", max_rate=quota.max_rate, max_24h=quota.max_24h,
                 sent_24h=quota.sent_24h, rate=self.bucket.rate)

    def quota_exhausted(self) -> bool:
        if self.quota is None or self.quota.remaining < 0:
            return False
        if self.sent_since_quota >= self.quota.remaining:
            log.warning("SES 24-hour quota used up; waiting for the next quota refresh",
                        max_24h=self.quota.max_24h)
            return True
        return False

    # ------------------------------------------------------------------ a send

    async def acquire(self) -> None:
        """Wait for this host's turn under the account's rate."""
        await self.bucket.acquire()

    async def send(self, mail: Rendered) -> str | None:
        """Send one mail (after `acquire`); the provider's message id. Counted here,
        whatever kind of mail it is; a refusal is counted and raised (SendError)."""
        started = time.monotonic()
        try:
            provider_id = await self.transport.send(mail)
        except SendError as err:
            self.metrics.email_send_failures.labels(str(err.failure)).inc()
            raise
        self.sent_since_quota += 1
        self._sent.inc()
        self._duration.observe(time.monotonic() - started)
        return provider_id

    def status(self) -> dict[str, object]:
        """What the API and the console show of the rate and the quota."""
        quota = self.quota
        return {
            "send_rate_per_second": self.bucket.rate,
            "send_rate_target_per_second": self.bucket.target,
            "ses_quota": None if quota is None else {
                "max_24h": quota.max_24h, "max_send_rate": quota.max_rate,
                "sent_24h": quota.sent_24h, "remaining": quota.remaining,
                "sent_since_read": self.sent_since_quota},
        }
