"""The Backlog reconciler: brings Backlog in line with the cases in the store.

Each round, one request at a time: notice issues closed or deleted by hand (and stop
touching them), open the issues of new cases, post the comments owed, close the issues
whose case is handled. Every step is recorded before its call and confirmed after it; a
step whose call may have landed without being confirmed (a crash, a timeout, a 5xx) is
looked up in Backlog by its marker before it is tried again, so nothing is created or
said twice. While Backlog is down the cases wait in the store; the daemon stays ready.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from jpixd.backlog import cases
from jpixd.backlog.client import (
    BacklogAuthRefused,
    BacklogClient,
    BacklogRejected,
    BacklogUnavailable,
    Issue,
)
from jpixd.backlog.project import BacklogConfigError, Project, resolve
from jpixd.barrier import contain, describe
from jpixd.config import BacklogConfig
from jpixd.loop import Loop, Reloaded
from jpixd.metrics import Metrics
from jpixd.model import Clock
from jpixd.records import Ticket, TicketComment
from jpixd.retry import Backoff
from jpixd.store.contract import ReconcilerStore

log = structlog.get_logger("jpixd.backlog")

# After Backlog refused a call for one case (a 4xx): not every round, but not never.
REFUSED_RETRY = timedelta(hours=1)
# Errors that speak for the whole round (Backlog down, settings wrong), not for one case.
_PASS_THROUGH = (BacklogUnavailable, BacklogConfigError, BacklogAuthRefused)
# The longest wait between rounds while Backlog is down or refuses our settings.
MAX_DOWN_DELAY = 900.0


@dataclass
class BacklogHealth:
    """What /admin/v1/status shows: is Backlog being reached, since when, and why not."""

    state: str = "starting"  # starting | ok | down | misconfigured
    since: datetime | None = None
    error: str | None = None
    last_ok_at: datetime | None = None
    failed_rounds: int = 0

    def to_json(self) -> dict[str, object]:
        return {"state": self.state, "since": self.since.isoformat() if self.since else None,
                "error": self.error,
                "last_ok_at": self.last_ok_at.isoformat() if self.last_ok_at else None}


class Reconciler(Loop):
    name = "backlog"
    role = "backlog"  # one host at a time (several hosts)

    def __init__(self, client: BacklogClient, cfg: BacklogConfig, store: ReconcilerStore,
                 metrics: Metrics, clock: Clock, *, rng: random.Random | None = None) -> None:
        super().__init__()
        self.rng = rng or random.Random()
        self.client = client
        self.cfg = cfg
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.interval = cfg.reconcile_interval.total_seconds()
        self.project: Project | None = None
        self.health = BacklogHealth()

    @property
    def stale_after(self) -> float:
        # A round may wait out a rate-limit window (≤ 2 min) between its heartbeats.
        return max(3 * self.interval, 300.0)

    def next_delay(self) -> float:
        if self.health.failed_rounds == 0:
            return self.interval
        wait = Backoff(self.interval, max(MAX_DOWN_DELAY, self.interval))  # jpixd.retry
        return wait.delay(self.health.failed_rounds, self.rng)

    def reset(self) -> None:
        self.project = None  # resolved again: the crash may have been about it

    def apply(self, change: Reloaded) -> None:
        cfg = change.cfg.backlog
        if not change.touches("backlog") or cfg is None or change.http is None:
            return
        self.reconfigure(cfg, BacklogClient(change.http, cfg.base_url, cfg.api_key.get(),
                                            metrics=change.metrics,
                                            timeout=cfg.timeout.total_seconds()))

    def status(self) -> dict[str, object] | None:
        return {**self.health.to_json(),
                "rate_limits": {k: {"remaining": v.remaining, "reset": v.reset}
                                for k, v in self.client.limits.items()}}

    def reconfigure(self, cfg: BacklogConfig, client: BacklogClient) -> None:
        """A reload: new settings (the project is resolved again with them)."""
        self.cfg, self.client, self.project = cfg, client, None
        self.interval = cfg.reconcile_interval.total_seconds()
        self.wake.set()

    async def run_once(self) -> None:
        try:
            if self.project is None:
                self.project = await resolve(self.client, self.cfg)
                log.info("Backlog project resolved", project=self.project.key,
                         project_id=self.project.id, issue_type_id=self.project.issue_type_id)
            await self._sync(self.project)
            await self._open(self.project)
            await self._comment()
            await self._close(self.project)
        except (BacklogConfigError, BacklogAuthRefused) as exc:
            # Settings Backlog contradicts, or a key that stopped working mid-round:
            # resolve again next round.
            self.project = None
            self._failed("misconfigured", str(exc))
        except BacklogUnavailable as exc:
            self._failed("down", str(exc))
        except BacklogRejected as exc:
            # A refusal outside one case's call (listing, looking up): our requests do not
            # fit this space (a project gone, a changed API). Resolve again next round.
            self.project = None
            self._failed("misconfigured", str(exc))
        except Exception as exc:  # the crash barrier: an answer our code cannot survive
            incident = await contain(self.store, self.metrics, exc, unit="backlog_case",
                                     origin="backlog", ref="(round)", payload="",
                                     now=self.clock())
            self.project = None
            self._failed("misconfigured", f"unexpected {describe(exc)} (incident {incident})")
        else:
            self._ok()
        finally:
            counts = await self.store.ticket_counts()
            self.metrics.backlog_open_tickets.set(counts["open"] + counts["closing"])

    # -- the steps ------------------------------------------------------------------

    async def _sync(self, project: Project) -> None:
        """Issues closed or deleted by hand are ended here, and never touched again."""
        tracked = await self.store.tickets_in("open", "closing")
        for start in range(0, len(tracked), 100):
            chunk = tracked[start:start + 100]
            listed = {i.id: i for i in await self.client.issues_by_id(
                project.id, [t.issue_id for t in chunk if t.issue_id is not None])}
            self.progress()
            for t in chunk:
                issue = listed.get(t.issue_id) if t.issue_id is not None else None
                if issue is None:
                    issue = await self._look_up(t)
                    if issue is None:
                        continue
                if issue.status_id == project.close_status_id:
                    by_hand = t.state == "open"
                    await self.store.ticket_ended(
                        t.id, "closed", self.clock(),
                        reason="Backlog 上で手動で完了にされました" if by_hand else None)
                    log.info("Backlog issue closed by hand; jpixd lets it be" if by_hand
                             else "Backlog issue closed", issue=t.issue_key, ticket=t.id)

    async def _open(self, project: Project) -> None:
        for t in await self.store.tickets_to_create(self.clock()):
            await self._guarded(t, self._open_one(project, t))

    async def _open_one(self, project: Project, t: Ticket) -> None:
        if t.attempted_at is not None:
            # A create may have landed before a crash or a lost answer: look first,
            # by keyword, and among the issues created since (Backlog's search index
            # may not have the newest issue yet).
            found = await self.client.find_issues(project.id, t.marker)
            if not found:
                line = cases.marker_line(t.marker)
                found = [i async for i in self.client.created_since(
                    project.id, t.attempted_at - timedelta(minutes=5))
                    if line in i.description]
            self.progress()
            if found:
                issue = min(found, key=lambda i: i.id)
                await self.store.ticket_opened(t.id, issue.id, issue.key, self.clock())
                log.info("Backlog issue found by its marker; not created again",
                         issue=issue.key, ticket=t.id, kind=t.kind)
                return
        await self.store.ticket_attempt(t.id, self.clock())
        try:
            issue = await self.client.create_issue(
                project_id=project.id, summary=t.summary,
                issue_type_id=project.issue_type_id,
                priority_id=(project.high_priority_id if t.priority == "high"
                             else project.priority_id),
                description=t.description, notified_user_ids=self.cfg.notified_user_ids)
        except BacklogRejected as exc:
            await self._refused(t, exc)
            return
        finally:
            self.progress()
        await self.store.ticket_opened(t.id, issue.id, issue.key, self.clock())
        log.info("Backlog issue opened", issue=issue.key, ticket=t.id, kind=t.kind,
                 email=t.email)

    async def _comment(self) -> None:
        for c in await self.store.comments_to_post():
            try:
                await self._comment_one(c)
            except _PASS_THROUGH:
                raise
            except Exception as exc:  # the crash barrier: this comment, not the round
                await contain(self.store, self.metrics, exc, unit="backlog_case",
                              origin="backlog", ref=f"comment:{c.id}",
                              payload=str(c.content), now=self.clock())
                await self.store.comment_dropped(c.id, self.clock())

    async def _comment_one(self, c: TicketComment) -> None:
        if c.attempted_at is not None and c.marker is not None:
            try:
                posted = any(c.marker in text
                             for text in await self.client.recent_comments(c.issue_id))
            except BacklogRejected as exc:
                await self._comment_refused(c.id, c.ticket_id, exc)
                return
            if posted:
                await self.store.comment_posted(c.id, self.clock())
                return
        marker = c.marker or cases.new_marker()
        await self.store.comment_attempt(c.id, marker, self.clock())
        try:
            await self.client.add_comment(c.issue_id,
                                          f"{c.content}\n\n{cases.marker_line(marker)}")
        except BacklogRejected as exc:
            await self._comment_refused(c.id, c.ticket_id, exc)
            return
        finally:
            self.progress()
        await self.store.comment_posted(c.id, self.clock())

    async def _close(self, project: Project) -> None:
        now = self.clock()
        sending = await self.store.sending_state()
        for t, facts in await self.store.open_cases():
            reason = cases.close_reason(facts, sending, now, self.cfg.auto_close_after)
            if reason is not None:
                await self.store.begin_close(t.id, reason, now)
        for t in await self.store.tickets_in("closing"):
            if t.next_try_at is not None and t.next_try_at > now:
                continue  # Backlog refused this close lately (a 4xx): not every round
            await self._guarded(t, self._close_one(project, t))

    async def _close_one(self, project: Project, t: Ticket) -> None:
        if t.attempted_at is not None:
            issue = await self._look_up(t)
            if issue is None:
                return
            if issue.status_id == project.close_status_id:
                await self.store.ticket_ended(t.id, "closed", self.clock())
                return
        await self.store.ticket_attempt(t.id, self.clock())
        try:
            await self.client.close_issue(t.issue_id or 0, status_id=project.close_status_id,
                                          comment=t.close_reason or "")
        except BacklogRejected as exc:
            await self._refused(t, exc)
            return
        finally:
            self.progress()
        await self.store.ticket_ended(t.id, "closed", self.clock())
        log.info("Backlog issue closed", issue=t.issue_key, ticket=t.id,
                 reason=t.close_reason)

    # -- outcomes ---------------------------------------------------------------------

    async def _look_up(self, t: Ticket) -> Issue | None:
        """The issue as Backlog has it now; None (and the case ended) if it was deleted."""
        try:
            issue = await self.client.issue(t.issue_id or 0)
        except BacklogRejected as exc:
            if not exc.not_found:
                raise
            await self._deleted(t.id, t.issue_key)
            return None
        finally:
            self.progress()
        return issue

    async def _deleted(self, ticket_id: int, issue_key: str | None) -> None:
        """The issue was deleted in Backlog: the case ends with it (its comments too)."""
        await self.store.ticket_ended(ticket_id, "gone", self.clock(),
                                      reason="Backlog 上で削除されました")
        log.warning("Backlog issue was deleted by hand; jpixd lets it be", issue=issue_key,
                    ticket=ticket_id)

    async def _refused(self, t: Ticket, exc: BacklogRejected) -> None:
        now = self.clock()
        if exc.not_found and t.state == "closing":
            await self._deleted(t.id, t.issue_key)
            return
        await self.store.ticket_refused(t.id, str(exc), now + REFUSED_RETRY, now)
        log.error("Backlog refused a call for a case; trying again later", ticket=t.id,
                  kind=t.kind, email=t.email, error=str(exc),
                  retry_in_seconds=REFUSED_RETRY.total_seconds())

    async def _guarded(self, t: Ticket, step: Coroutine[Any, Any, None]) -> None:
        """One case's step inside the crash barrier: this case, not the round."""
        try:
            await step
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            await self._case_crashed(t, exc)

    async def _case_crashed(self, t: Ticket, exc: Exception) -> None:
        """Something in this case made our code fail: quarantined, retried in an hour like
        a refused call, and the other cases go on."""
        now = self.clock()
        incident = await contain(self.store, self.metrics, exc, unit="backlog_case",
                                 origin="backlog", ref=f"ticket:{t.id}",
                                 payload=json.dumps(dataclasses.asdict(t), default=str,
                                                    ensure_ascii=False), now=now)
        await self.store.ticket_refused(t.id, f"unexpected {describe(exc)} (incident "
                                              f"{incident})", now + REFUSED_RETRY, now)

    async def _comment_refused(self, comment_id: int, ticket_id: int,
                               exc: BacklogRejected) -> None:
        if exc.not_found:
            await self._deleted(ticket_id, None)
            return
        await self.store.comment_dropped(comment_id, self.clock())
        log.error("Backlog refused a comment; it is dropped", ticket=ticket_id,
                  error=str(exc))

    def _ok(self) -> None:
        h = self.health
        if h.state in ("down", "misconfigured"):
            log.info("Backlog reachable again", was=h.state,
                     since=h.since.isoformat() if h.since else None)
        if h.state != "ok":
            h.state, h.since, h.error = "ok", self.clock(), None
        h.last_ok_at, h.failed_rounds = self.clock(), 0
        self.degraded = None

    def _failed(self, state: str, error: str) -> None:
        h = self.health
        self.degraded = f"Backlog {state}"
        if (h.state, h.error) != (state, error):
            if state == "misconfigured":
                log.error("Backlog settings do not match the Backlog space; cases wait in "
                          "the store", error=error)
            else:
                log.warning("Backlog unavailable; cases wait in the store", error=error)
        if h.state != state:
            h.state, h.since = state, self.clock()
        h.error = error
        h.failed_rounds += 1
