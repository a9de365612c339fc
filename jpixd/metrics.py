"""Every Prometheus metric of SPEC §9, on an injected registry.

One object owns them so that tests get a fresh registry each and the names live in one
place. Counters are declared without the `_total` suffix: prometheus-client adds it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from jpixd.bounces.parse import SERIES as MAIL_EVENT_SERIES
from jpixd.channels import KINDS as CHANNEL_KINDS
from jpixd.channels import RESULTS as CHANNEL_RESULTS
from jpixd.loop import LEADER_ROLES
from jpixd.mail.transports import Failure
from jpixd.model import Change, DeliveryState, NoticeKind
from jpixd.selfmail import REFUSALS

# Results of an SQS message (the bounce consumer counts each in one of them).
SQS_RESULTS = ("processed", "duplicate", "quarantined")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        # Loops and supervision.
        self.loop_up = Gauge("jpixd_loop_up", "1 while a supervised loop is running",
                             ["loop"], registry=r)
        self.loop_heartbeat_age = Gauge(
            "jpixd_loop_heartbeat_age_seconds", "Seconds since a loop last made progress "
            "(stale past its stale_after: /readyz says so)", ["loop"], registry=r)
        self.loop_degraded = Gauge(
            "jpixd_loop_degraded", "1 while a running loop cannot do its job (a peer down: "
            "SQS, Backlog, the archive sink)", ["loop"], registry=r)
        self.leader = Gauge(
            "jpixd_leader", "1 while this host runs a singleton loop (on SQLite, the one "
            "host runs them all; on PostgreSQL, one host each, by advisory lock)", ["loop"],
            registry=r)
        for role in LEADER_ROLES:
            self.leader.labels(role)
        self.loop_restarts = Counter("jpixd_loop_restarts", "Loop crashes followed by a restart",
                                     ["loop"], registry=r)
        self.unit_errors = Counter(
            "jpixd_unit_errors", "Units of work (feed poll or item, SQS message, Backlog "
            "case, delivery) stopped by the crash barrier and quarantined", ["unit"],
            registry=r)
        for unit in ("feed_poll", "feed_item", "sqs_message", "backlog_case", "delivery"):
            self.unit_errors.labels(unit)
        self.http_shed = Counter(
            "jpixd_http_shed", "Connections or requests the HTTP listener dropped",
            ["listener", "reason"], registry=r)
        for listener in ("admin", "public"):
            for reason in ("connection_limit", "header_timeout", "body_timeout",
                           "idle_evicted", "client_limit", "client_requests"):
                self.http_shed.labels(listener, reason)
        # The event archive.
        self.archive_pending = Gauge(
            "jpixd_archive_pending", "Archive records written and not yet accepted by the "
            "sink (Firehose or files)", registry=r)
        self.archive_records = Counter(
            "jpixd_archive_records", "Archive records by outcome: sent (accepted), failed "
            "(the whole batch refused, kept), retried (refused one by one, kept)",
            ["result"], registry=r)
        for result in ("sent", "failed", "retried"):
            self.archive_records.labels(result)
        # The public pages.
        self.web_mails = Counter(
            "jpixd_web_mails", "Self-service mails (sign-up confirmations, manage links) by "
            "outcome", ["kind", "result"], registry=r)
        for kind in ("confirm", "manage"):
            for result in ("sent", "failed", *REFUSALS, "suppressed", "paused", "dropped",
                           "shadow", "gone"):
                self.web_mails.labels(kind, result)
        self.web_refusals = Counter(
            "jpixd_web_refusals", "Public page requests refused (bad or expired link, CSRF, "
            "rate limit)", ["reason"], registry=r)
        for reason in ("bad_link", "csrf", "rate_limited", "rehearsal"):
            self.web_refusals.labels(reason)
        # Channels beyond mail (issue 26).
        self.channel_messages = _channel_messages(r)
        # Feeds.
        self.feed_polls = Counter("jpixd_feed_polls", "Feed polls by outcome",
                                  ["source", "result"], registry=r)
        self.feed_last_success = Gauge("jpixd_feed_last_success_timestamp_seconds",
                                       "Unix time of the last successful poll",
                                       ["source"], registry=r)
        self.notices = Counter("jpixd_notices", "Notices and revisions recorded",
                               ["source", "kind", "change"], registry=r)
        self.feed_status_unrecognised = Counter(
            "jpixd_feed_status_unrecognised", "Items whose words about recovery or status "
            "were not understood (the status was kept)", ["source"], registry=r)
        self.feed_detail_failures = Counter(
            "jpixd_feed_detail_failures", "Detail pages that could not be fetched or read",
            ["source"], registry=r)
        # Outbox and sending.
        self.deliveries = Gauge("jpixd_deliveries", "Deliveries by state", ["state"], registry=r)
        for state in DeliveryState:  # every state visible from the first scrape, as 0
            self.deliveries.labels(str(state))
        self.outbox_oldest_pending_age = Gauge(
            "jpixd_outbox_oldest_pending_age_seconds",
            "Age of the oldest delivery that is due and not yet sent (stalled mail)", registry=r)
        self.emails_sent = Counter("jpixd_emails_sent", "Mails accepted by the transport",
                                   ["transport"], registry=r)
        self.email_send_failures = Counter("jpixd_email_send_failures",
                                           "Failed send attempts by reason", ["reason"],
                                           registry=r)
        for failure in Failure:
            self.email_send_failures.labels(str(failure))
        self.send_duration = Histogram("jpixd_send_duration_seconds",
                                       "Time one transport call took", ["transport"],
                                       registry=r)
        self.send_rate_limit = Gauge("jpixd_send_rate_limit_per_second",
                                     "The token bucket's current rate", registry=r)
        self.ses_quota_remaining = Gauge("jpixd_ses_quota_remaining_24h",
                                         "SES 24-hour quota left (-1 unlimited)", registry=r)
        # Bounces and the guard.
        self.mail_events = Counter("jpixd_mail_events", "SES notifications recorded",
                                   ["type", "subtype"], registry=r)
        for type_, subtype in MAIL_EVENT_SERIES:
            self.mail_events.labels(type_, subtype)
        self.bounce_rate = Gauge("jpixd_bounce_rate", "Bounce rate over the guard window",
                                 registry=r)
        self.complaint_rate = Gauge("jpixd_complaint_rate",
                                    "Complaint rate over the guard window", registry=r)
        self.sending_paused = Gauge("jpixd_sending_paused", "1 while sending is paused",
                                    registry=r)
        self.suppressed_addresses = Gauge("jpixd_suppressed_addresses",
                                          "Addresses currently suppressed", registry=r)
        self.sqs_messages = Counter("jpixd_sqs_messages", "SQS messages by outcome", ["result"],
                                    registry=r)
        for result in SQS_RESULTS:
            self.sqs_messages.labels(result)
        # Backlog.
        self.backlog_requests = Counter("jpixd_backlog_requests", "Backlog API calls",
                                        ["op", "status"], registry=r)
        self.backlog_open_tickets = Gauge("jpixd_backlog_open_tickets",
                                          "Backlog issues jpixd holds open", registry=r)

    def transport_series(self, transport: str) -> None:
        """The configured transport's series, as 0 from start-up (SPEC §9)."""
        self.emails_sent.labels(transport)
        self.send_duration.labels(transport)

    def source_series(self, source: str) -> None:
        """A configured source's notice series, as 0 from start-up (SPEC §9)."""
        for kind in NoticeKind:
            for change in Change:
                self.notices.labels(source, str(kind), str(change))

    def backlog_series(self, ops: tuple[str, ...]) -> None:
        """The Backlog calls' failure series, as 0 from start-up (SPEC §9)."""
        for op in ops:
            self.backlog_requests.labels(op, "error")


def _channel_messages(r: CollectorRegistry) -> Counter:
    counter = Counter(
        "jpixd_channel_messages", "Channel messages (webhook, Slack, Teams) by outcome of "
        "each attempt: sent, retry (5xx, 429, timeout), gone (404/410), failed (given up, "
        "or refused), skipped (its channel paused or removed)", ["kind", "result"],
        registry=r)
    for kind in CHANNEL_KINDS:
        for result in CHANNEL_RESULTS:
            counter.labels(kind, result)
    return counter
