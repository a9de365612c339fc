"""The feed poller loop: every source on its own interval (with jitter), conditional GET,
backoff with jitter on errors, and each item recorded in its own transaction together
with its deliveries.

Crash safety (the flaw of rss2email): nothing is remembered as "seen" except the notice
revisions themselves, committed one by one; the validators (ETag, Last-Modified) are
saved only after every item of the poll was committed, so a kill at any point makes the
next poll fetch and compare again instead of getting a 304 that hides unrecorded items.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from jpixd import logs
from jpixd.barrier import contain, describe
from jpixd.changes import what_changed
from jpixd.config import SourceConfig
from jpixd.fanout import Policy, planner
from jpixd.feeds import identity, layout
from jpixd.feeds.charset import decode
from jpixd.feeds.errors import FeedError, LayoutChanged, ParseError
from jpixd.feeds.extract import DETAILS, PARSERS
from jpixd.feeds.fetch import Fetched, Fetcher
from jpixd.feeds.normalise import (
    Draft,
    ItemError,
    classify,
    normalise_item,
    revision_of,
)
from jpixd.feeds.parsers import ParseResult, list_fingerprint
from jpixd.feeds.policy import detail_refusal
from jpixd.loop import Loop, Reloaded
from jpixd.metrics import Metrics
from jpixd.model import Change, Clock, Notice, NoticeStatus, SourceState, StoredNotice
from jpixd.records import RecordResult
from jpixd.retry import Backoff
from jpixd.store.contract import PollerStore

log = structlog.get_logger("jpixd.feeds")

MAX_PAYLOAD = 65536


def _parse(kind: str, fetched: Fetched) -> ParseResult:
    text, _codec = decode(fetched.body, fetched.charset)
    return PARSERS[kind](text, url=fetched.final_url)


def draft_payload(draft: Draft) -> str:
    """An item as the parser read it, for the quarantine (verbatim where we can)."""
    return json.dumps(dataclasses.asdict(draft), ensure_ascii=False, default=str)[:MAX_PAYLOAD]
POLL_RESULTS = ("ok", "not_modified", "error", "parse_error", "layout_changed")
MAX_BACKOFF = timedelta(hours=1)


Sleep = Callable[[float], Awaitable[None]]


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


@dataclass
class _Poll:
    """What one poll learns as it goes: the notices it saw, the open ones it may link to."""

    seen: set[int] = field(default_factory=set)
    open: list[StoredNotice] | None = None
    # key → (notice id, list fingerprint) of every key the source has shown, read once
    # per poll: a key not in it is a new item, with no per-item lookup (a first poll of
    # a long feed is all new items).
    known: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    detail_error: str | None = None
    layout: str | None = None  # a detail page in a layout we cannot read


@dataclass
class PollReport:
    source: str
    result: str  # ok | not_modified | error | parse_error | layout_changed
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = True

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "result": self.result, "error": self.error,
                "counts": self.counts, "changes": self.changes, "complete": self.complete}


class FeedPoller(Loop):
    name = "feeds"
    role = "feeds"  # one host at a time (several hosts)

    def __init__(self, sources: Sequence[SourceConfig], store: PollerStore, fetcher: Fetcher,
                 metrics: Metrics, clock: Clock, policy: Policy, *, baseline: bool = False,
                 rng: random.Random | None = None, sleep: Sleep = _sleep,
                 on_deliveries: Callable[[], None] | None = None) -> None:
        super().__init__()
        # Called when a recorded revision made deliveries: the sender looks at once
        # instead of at its next interval (a failure notice must not wait).
        self.on_deliveries = on_deliveries
        self.sources = {s.name: s for s in sources}
        self.store = store
        self.fetcher = fetcher
        self.metrics = metrics
        self.clock = clock
        self.policy = policy
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.locks = {name: asyncio.Lock() for name in self.sources}
        # `jpixd run --baseline`: the first complete poll of each source in this process
        # records without mailing (a cut-over from the old mailer).
        self.baseline_pending = set(self.sources) if baseline else set()
        self.next_due: dict[str, datetime] = {}
        self.interval = min((s.interval.total_seconds() for s in sources), default=60.0)
        for name in self.sources:
            self._series(name)

    def _series(self, name: str) -> None:
        """Every series of a source from its start, as 0 (SPEC §9: alert rules see them)."""
        for result in POLL_RESULTS:
            self.metrics.feed_polls.labels(name, result)
        self.metrics.source_series(name)
        self.metrics.feed_status_unrecognised.labels(name)
        self.metrics.feed_detail_failures.labels(name)

    def reset(self) -> None:
        self.next_due.clear()  # read again from the store: what was committed

    def apply(self, change: Reloaded) -> None:
        if change.touches("sources", "timezone"):
            self.reconfigure(change.cfg.sources, Policy.from_config(change.cfg))

    async def poll_named(self, name: str) -> PollReport | None:
        """Poll the source of that name now (the admin API's "poll now"); None if none."""
        src = self.sources.get(name)
        return None if src is None else await self.poll(src)

    def reconfigure(self, sources: Sequence[SourceConfig], policy: Policy) -> None:
        """A reload: sources added, removed or changed take effect at the next round (a
        poll in flight finishes under the settings it started with)."""
        new = {s.name: s for s in sources}
        for name, src in new.items():
            if name not in self.locks:
                self.locks[name] = asyncio.Lock()
                self._series(name)
            if self.sources.get(name) != src:
                self.next_due.pop(name, None)  # a new or changed source is due now
        for name in set(self.sources) - set(new):
            self.next_due.pop(name, None)
        self.sources, self.policy = new, policy
        self.interval = min((s.interval.total_seconds() for s in sources), default=60.0)
        self.wake.set()

    @property
    def stale_after(self) -> float:
        # A poll with many new NTT West items fetches their pages one at a time.
        longest = max((s.interval.total_seconds() for s in self.sources.values()), default=60)
        return max(3 * longest, 600.0)

    def next_delay(self) -> float:
        if not self.next_due:
            return self.interval
        soonest = min(self.next_due.values())
        return min(max((soonest - self.clock()).total_seconds(), 0.5), self.interval)

    async def run_once(self) -> None:
        now = self.clock()
        due = []
        for src in self.sources.values():
            if not src.enabled:
                continue
            if src.name not in self.next_due:
                state = await self.store.source_state(src.name)
                self.next_due[src.name] = state.next_poll_at or now
            if self.next_due[src.name] <= now:
                due.append(src)
        async with asyncio.TaskGroup() as tg:
            for src in due:
                tg.create_task(self.poll(src), name=f"poll:{src.name}")

    async def poll(self, src: SourceConfig) -> PollReport:
        """Poll one source now (the loop, or the admin API's "poll now")."""
        async with self.locks[src.name]:
            started = time.monotonic()
            with logs.bound(source=src.name):
                try:
                    report = await self._poll(src)
                except Exception as exc:  # the crash barrier: one poll, not the loop
                    report = await self._poll_crashed(src, exc)
                log.info("feed polled", result=report.result, error=report.error,
                         complete=report.complete, **report.counts,
                         duration_s=round(time.monotonic() - started, 3))
            self.metrics.feed_polls.labels(src.name, report.result).inc()
            return report

    async def _poll(self, src: SourceConfig) -> PollReport:
        now = self.clock()
        state = replace(await self.store.source_state(src.name), last_attempt_at=now)
        if state.permanent_url and state.permanent_for != src.url:
            # The operator changed the URL since the redirect was learnt: theirs wins.
            log.warning("remembered redirect dropped: the configured url changed",
                        dropped=state.permanent_url)
            state = replace(state, permanent_url=None, permanent_for=None, etag=None,
                            last_modified=None)
        url = state.permanent_url or src.url
        try:
            fetched = await self.fetcher.fetch(
                url, limit_seconds=src.timeout.total_seconds(), max_bytes=src.max_body_bytes,
                etag=state.etag, last_modified=state.last_modified, source_url=src.url,
                redirect_hosts=src.redirect_hosts)
        except FeedError as exc:
            return await self._failed(src, state, now, "error", str(exc))
        if fetched.permanent_url and fetched.permanent_url != state.permanent_url:
            log.warning("source moved permanently; polling the new url from now on",
                        new_url=fetched.permanent_url, configured=src.url)
            state = replace(state, permanent_url=fetched.permanent_url, permanent_for=src.url)
        if fetched.not_modified:
            await self._succeeded(src, state, now, fetched, complete=True)
            return PollReport(src.name, "not_modified")
        try:
            # Parsing is CPU work on untrusted bytes: off the event loop, so that health
            # checks, sending and the watchdog never wait for it.
            parsed = await asyncio.to_thread(_parse, src.kind, fetched)
        except LayoutChanged as exc:
            return await self._layout_changed(src, state, now, str(exc))
        except ParseError as exc:
            return await self._failed(src, state, now, "parse_error", str(exc))
        except Exception as exc:  # the crash barrier: a body our parser cannot survive
            body = fetched.body[:MAX_PAYLOAD].decode("utf-8", "replace")
            incident = await contain(self.store, self.metrics, exc, unit="feed_poll",
                                     origin="feed", ref=f"{src.name}:(page)", payload=body,
                                     now=now)
            return await self._failed(src, state, now, "parse_error",
                                      f"the page could not be read ({describe(exc)}; "
                                      f"incident {incident})")
        why = layout.verdict(src.kind, parsed, state.last_items)
        if why is not None:
            # The page is not what it was: read nothing from it, keep what we had.
            return await self._layout_changed(src, state, now, why)
        report = PollReport(src.name, "ok")
        poll = _Poll()
        await self._items(src, state, parsed, fetched.final_url, now, report, poll)
        if report.complete and not parsed.errors:
            await self._withdraw(src, poll, now, report)
        state = replace(state, detail_error=poll.detail_error,
                        last_items=len(parsed.drafts) if report.complete else state.last_items)
        await self._succeeded(src, state, now, fetched, complete=report.complete)
        if poll.layout is not None:
            await self._layout_changed(src, await self.store.source_state(src.name), now,
                                       poll.layout, next_at=self.next_due[src.name])
            report.result, report.error = "layout_changed", poll.layout
        return report

    async def _items(self, src: SourceConfig, state: SourceState, parsed: ParseResult,
                     base_url: str, now: datetime, report: PollReport, poll: _Poll) -> None:
        baseline = src.name in self.baseline_pending or (
            not state.baseline_done and not src.send_on_first_poll)
        for err in parsed.errors:
            await self._quarantine(src, err, report)
        known = poll.known = await self.store.fingerprints(src.name) if parsed.drafts else {}
        details = 0
        ids: set[str] = set()
        for draft in parsed.drafts:
            try:
                if draft.external_id in ids:
                    # Two items with one id would overwrite each other on every poll and
                    # mail an "update" each time: the first stands, the second is kept
                    # for a person to look at.
                    raise ItemError(draft.external_id, "a second item with the same id in "
                                    "one feed (the first one is used)", draft_payload(draft))
                ids.add(draft.external_id)
                fp = None
                if draft.needs_detail and src.kind in DETAILS:
                    fp = list_fingerprint(draft)
                    seen = known.get(draft.external_id)
                    if seen is not None and seen[1] == fp:
                        await self.store.touch_notice(seen[0], now)
                        poll.seen.add(seen[0])
                        report.count("unchanged")
                        continue
                    if details and src.detail_delay.total_seconds() > 0:
                        await self.sleep(src.detail_delay.total_seconds())  # politeness
                    details += 1
                    draft = await self._detail(src, draft, poll)
                    self.progress()
                await self._record(src, draft, base_url, now, baseline, report, fp, poll)
            except ItemError as err:
                if not err.payload:
                    err.payload = draft_payload(draft)
                await self._quarantine(src, err, report)
            except LayoutChanged as exc:
                report.complete = False
                report.count("retry_later")
                poll.layout = poll.detail_error = f"{draft.url}: {exc}"
                self.metrics.feed_detail_failures.labels(src.name).inc()
            except FeedError as exc:
                # The item is not lost: the validators are not saved, so the next poll
                # sees it again.
                report.complete = False
                report.count("retry_later")
                poll.detail_error = f"{draft.url}: {exc}"
                self.metrics.feed_detail_failures.labels(src.name).inc()
                log.warning("item not recorded; will retry", item=draft.external_id,
                            error=str(exc))
            except Exception as exc:  # the crash barrier: this item, not the poll
                await contain(self.store, self.metrics, exc, unit="feed_item", origin="feed",
                              ref=f"{src.name}:{draft.external_id}",
                              payload=draft_payload(draft), now=self.clock())
                report.count("quarantined")

    async def _detail(self, src: SourceConfig, draft: Draft, poll: _Poll) -> Draft:
        assert draft.url is not None
        why = detail_refusal(src.url, draft.url, src.detail_hosts)
        if why is not None:
            raise ItemError(draft.external_id, f"detail link not followed: {why}",
                            draft_payload(draft))
        page = await self.fetcher.fetch(draft.url, limit_seconds=src.timeout.total_seconds(),
                                        max_bytes=src.max_body_bytes, source_url=src.url,
                                        redirect_hosts=src.redirect_hosts)
        # Decoding may score a whole page character by character: off the loop too.
        text, _ = await asyncio.to_thread(decode, page.body, page.charset)
        try:
            return await asyncio.to_thread(DETAILS[src.kind], text, draft)
        except ParseError as exc:
            # Kept verbatim for a person to look at, and retried on the next poll.
            await self.store.quarantine(origin="feed", ref=f"{src.name}:{draft.external_id}",
                                        reason=str(exc), payload=text[:65536], now=self.clock())
            raise

    async def _record(self, src: SourceConfig, draft: Draft, base_url: str, now: datetime,
                      baseline: bool, report: PollReport, fingerprint: str | None,
                      poll: _Poll) -> None:
        item = normalise_item(draft, source=src.name, carrier=src.carrier, ref=now,
                              base_url=base_url)
        notice, key = item.notice, item.notice.external_id
        if item.unrecognised:
            self.metrics.feed_status_unrecognised.labels(src.name).inc()
            log.warning("status words not understood; status kept", item=key,
                        phrases=list(item.unrecognised)[:5])
        stored = await self.store.notice_by_key(src.name, key) if key in poll.known else None
        if stored is None:
            if poll.open is None:
                poll.open = await self.store.open_notices(src.name, withdrawn=True)
            stored = identity.continued(poll.open, notice)
            if stored is not None:
                log.info("report linked to the notice it continues", item=key,
                         notice_id=stored.id, report_number=notice.report_number)
        if stored is not None:
            poll.seen.add(stored.id)
            notice = replace(notice, external_id=stored.notice.external_id)
            if identity.older_report(stored.notice, notice):
                await self.store.touch_notice(stored.id, now, fingerprint, source=src.name,
                                              key=key, report_number=notice.report_number)
                report.count("older_report")
                return
            if not item.status_stated and stored.notice.status != NoticeStatus.WITHDRAWN:
                notice = replace(notice, status=stored.notice.status)  # when unsure, keep it
        rev = revision_of(notice)
        if stored is not None and stored.revision == rev:
            await self.store.touch_notice(stored.id, now, fingerprint, source=src.name,
                                          key=key, report_number=notice.report_number)
            report.count("unchanged")
            return
        change = Change.BASELINE if baseline else classify(
            stored.notice if stored else None, notice)
        if stored is not None and change != Change.BASELINE:
            # What this revision changed, kept with it for its mail and its page.
            notice = replace(notice, changes=what_changed(stored.notice, notice))
        result = await self.store.record_revision(
            notice, revision=rev, change=change, now=now, fingerprint=fingerprint, key=key,
            planner=planner(notice, change, now, self.policy))
        poll.seen.add(result.notice_id)
        poll.known[key] = (result.notice_id, fingerprint)
        self._recorded(src, notice, change, result, report)

    def _recorded(self, src: SourceConfig, notice: Notice, change: Change,
                  result: RecordResult, report: PollReport) -> None:
        report.count(str(change))
        report.changes.append({"notice_id": result.notice_id,
                               "external_id": notice.external_id, "change": str(change),
                               "deliveries": result.deliveries})
        self.metrics.notices.labels(src.name, str(notice.kind), str(change)).inc()
        if result.deliveries and self.on_deliveries is not None:
            self.on_deliveries()
        log.info("notice recorded", notice_id=result.notice_id, change=str(change),
                 kind=str(notice.kind), status=str(notice.status),
                 deliveries=result.deliveries, reminders=result.reminders,
                 superseded=result.superseded)

    async def _withdraw(self, src: SourceConfig, poll: _Poll, now: datetime,
                        report: PollReport) -> None:
        """Open notices this complete poll did not show: marked withdrawn, reminders held,
        nothing mailed (a notice is never announced as ended unless its source says so)."""
        gone = identity.withdrawn(await self.store.open_notices(src.name), poll.seen, now)
        for stored in gone:
            notice = replace(stored.notice, status=NoticeStatus.WITHDRAWN)
            result = await self.store.record_revision(
                notice, revision=revision_of(notice), change=Change.WITHDRAW, now=now,
                planner=planner(notice, Change.WITHDRAW, now, self.policy))
            log.warning("notice withdrawn: gone from its source without a word",
                        notice_id=stored.id, kind=str(notice.kind),
                        was=str(stored.notice.status), reminders_held=result.reminders_cancelled)
            self._recorded(src, notice, Change.WITHDRAW, result, report)

    async def _quarantine(self, src: SourceConfig, err: ItemError, report: PollReport) -> None:
        new = await self.store.quarantine(origin="feed", ref=f"{src.name}:{err.ref}",
                                          reason=err.reason, payload=err.payload,
                                          now=self.clock())
        report.count("quarantined")
        if new:
            log.warning("item quarantined", item=err.ref, reason=err.reason)

    async def _succeeded(self, src: SourceConfig, state: SourceState, now: datetime,
                         fetched: Fetched, *, complete: bool) -> None:
        jitter = self.rng.uniform(0.9, 1.1)
        next_at = now + src.interval * jitter
        new = replace(
            state, last_success_at=now, consecutive_failures=0, next_poll_at=next_at,
            last_error=None, layout_warning=None,
            last_result="not_modified" if fetched.not_modified else "ok",
            # Validators only when every item is committed (see the module docstring).
            etag=fetched.etag if complete else None,
            last_modified=fetched.last_modified if complete else None,
            baseline_done=state.baseline_done or complete,
        )
        await self.store.save_source_state(src.name, new)
        self.next_due[src.name] = next_at
        if complete:
            self.baseline_pending.discard(src.name)
        self.metrics.feed_last_success.labels(src.name).set(now.timestamp())

    async def _failed(self, src: SourceConfig, state: SourceState, now: datetime,
                      result: str, error: str) -> PollReport:
        failures = state.consecutive_failures + 1
        ceiling = max(MAX_BACKOFF, src.interval)
        # Twice the interval first, doubling up to the ceiling (jpixd.retry).
        wait = Backoff(2 * src.interval.total_seconds(), ceiling.total_seconds())
        next_at = now + timedelta(seconds=wait.delay(failures, self.rng))
        await self.store.save_source_state(src.name, replace(
            state, last_error_at=now, last_error=error, consecutive_failures=failures,
            next_poll_at=next_at, last_result=result))
        self.next_due[src.name] = next_at
        log.warning("feed poll failed", result=result, error=error, failures=failures,
                    retry_in_s=round((next_at - now).total_seconds(), 1))
        return PollReport(src.name, result, error=error)

    async def _poll_crashed(self, src: SourceConfig, exc: Exception) -> PollReport:
        """A poll that failed outside any one item: counted, quarantined with what we
        know, and retried later with backoff like any failed poll."""
        now = self.clock()
        incident = await contain(self.store, self.metrics, exc, unit="feed_poll",
                                 origin="feed", ref=f"{src.name}:(poll)", payload="", now=now)
        state = await self.store.source_state(src.name)
        return await self._failed(src, state, now, "error",
                                  f"poll failed: {describe(exc)} (incident {incident})")

    async def _layout_changed(self, src: SourceConfig, state: SourceState, now: datetime,
                              why: str, next_at: datetime | None = None) -> PollReport:
        """The page no longer reads as it did: nothing recorded, withdrawn or mailed; the
        source polls on at its interval (readiness untouched) and says why."""
        next_at = next_at or now + src.interval * self.rng.uniform(0.9, 1.1)
        await self.store.save_source_state(src.name, replace(
            state, last_error_at=now, last_error=f"layout changed: {why}",
            layout_warning=why, last_result="layout_changed", next_poll_at=next_at))
        self.next_due[src.name] = next_at
        log.error("feed layout changed: nothing read from this page", reason=why,
                  last_items=state.last_items)
        return PollReport(src.name, "layout_changed", error=why)
