"""The Backlog client and reconciler against a strict fake Backlog on 127.0.0.1.

Time is a fake clock shared by the reconciler, the client's waits and the fake server's
rate-limit windows, so hours of Backlog outage, rate-limit resets and `auto_close_after`
pass without waiting; only the client's own timeout is real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import structlog
from prometheus_client import CollectorRegistry

from jpixd.backlog import cases
from jpixd.backlog.client import BacklogClient, BacklogRejected, BacklogUnavailable
from jpixd.backlog.project import BacklogConfigError, resolve
from jpixd.backlog.reconciler import Reconciler
from jpixd.config import BacklogConfig, Secret
from jpixd.metrics import Metrics
from jpixd.model import SendingState
from jpixd.store import Store
from tests.backlogserver import API_KEY, FakeBacklog, Fault, backlog_server
from tests.sesnotes import record_bounce, sent_to

START = datetime(2026, 11, 29, 0, 0, 5, tzinfo=UTC)


class FakeTime:
    """A clock that moves only when told, or when someone sleeps on it."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def wall(self) -> float:
        return self.now.timestamp()

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=max(seconds, 0.0))
        await asyncio.sleep(0)

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def backlog_config(base_url: str, **kw: Any) -> BacklogConfig:
    defaults: dict[str, Any] = {
        "base_url": base_url, "api_key": Secret("test", API_KEY), "project_key": "NOC",
        "issue_type": "バウンス", "priority": "Normal", "notified_user_ids": (7, 8),
        "timeout": timedelta(seconds=1)}
    defaults.update(kw)
    return BacklogConfig(**defaults)


@dataclass
class Rig:
    fake: FakeBacklog
    client: BacklogClient
    reconciler: Reconciler
    store: Store
    clock: FakeTime
    registry: CollectorRegistry
    http: aiohttp.ClientSession
    feedback: int = 0  # SES feedback ids handed out so far

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    async def bounce(self, *emails: str, sub: str = "General", btype: str = "Permanent") -> None:
        """SES bounce notifications for these addresses, recorded as the consumer does."""
        for e in emails:
            self.feedback += 1
            await record_bounce(self.store, e, self.clock(), n=self.feedback, btype=btype,
                                sub=sub)


@asynccontextmanager
async def rig(store: Store, *, limit: int = 600, **cfg: Any) -> AsyncIterator[Rig]:
    clock = FakeTime()
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    async with backlog_server(clock.wall, limit=limit) as fake, \
            aiohttp.ClientSession() as http:
        config = backlog_config(fake.base, **cfg)
        client = BacklogClient(http, fake.base, API_KEY, metrics=metrics, timeout=1.0,
                               wall=clock.wall, monotonic=clock.wall, sleep=clock.sleep)
        yield Rig(fake, client, Reconciler(client, config, store, metrics, clock), store,
                  clock, registry, http)


def addresses(n: int) -> list[str]:
    return [f"user{i:02d}@isp{i % 3}.example.jp" for i in range(n)]


async def subscribed(store: Store, emails: list[str]) -> None:
    await sent_to(store, START - timedelta(hours=1), *emails, title="【故障】東京都の一部")


# -- the whole life of twenty cases --------------------------------------------------


async def test_fifty_bounces_of_twenty_addresses_make_twenty_issues_and_thirty_comments(
        store: Store) -> None:
    emails = addresses(20)
    await subscribed(store, emails)
    async with rig(store) as r:
        await r.bounce(*[emails[i % 20] for i in range(50)])
        await r.reconciler.run_once()

        assert len(r.fake.issues) == 20
        by_email = {i.summary.split(": ")[1].split(" ")[0]: i for i in r.fake.issues.values()}
        assert sorted(by_email) == sorted(emails)
        for email, issue in by_email.items():
            assert issue.summary == f"[jpixd] バウンス: {email} (Permanent/General)"
            assert "smtp; 550 5.1.1 user unknown" in issue.description
            assert "【故障】東京都の一部" in issue.description  # the notice
            assert f"ses-{email}" in issue.description
            assert "jpixd-marker: jpixd" in issue.description
            assert (issue.issue_type_id, issue.priority_id, issue.notified) == (501, 3, [7, 8])
        assert sum(len(i.comments) for i in r.fake.issues.values()) == 30
        assert all("再びバウンス" in c for i in r.fake.issues.values() for c in i.comments)
        # Ten addresses bounced three times, ten twice.
        assert sorted(len(i.comments) for i in r.fake.issues.values()) == [1] * 10 + [2] * 10

        # Nulab's rules: one request at a time, a second between updates.
        gaps = [b - a for a, b in zip(r.fake.update_times, r.fake.update_times[1:],
                                      strict=False)]
        assert len(r.fake.update_times) == 50 and min(gaps) >= 1.0
        assert r.metric("jpixd_backlog_requests_total", op="create_issue", status="201") == 20
        assert r.metric("jpixd_backlog_requests_total", op="add_comment", status="201") == 30
        assert r.metric("jpixd_backlog_open_tickets") == 20
        assert (await store.list_tickets(state="open"))[1] == 20
        assert r.fake.max_inflight == 1
        assert r.reconciler.health.state == "ok"

        # Not yet handled: nothing is closed before auto_close_after.
        r.clock.advance(timedelta(hours=23))
        await r.reconciler.run_once()
        assert all(i.status_id == 1 for i in r.fake.issues.values())

        r.clock.advance(timedelta(hours=1, minutes=5))
        await r.reconciler.run_once()
        assert all(i.status_id == 4 for i in r.fake.issues.values())
        for issue in r.fake.issues.values():
            assert "配信停止（サプレッション）済み" in issue.comments[-1]
            assert "24 時間" in issue.comments[-1]
        assert (await store.list_tickets(state="closed"))[1] == 20
        assert r.metric("jpixd_backlog_open_tickets") == 0

        # Settled: another round changes nothing in Backlog.
        updates = len(r.fake.update_times)
        await r.reconciler.run_once()
        assert len(r.fake.update_times) == updates
        # The project, issue type and priority were looked up once, at the start.
        lookups = [p for m, p, _ in r.fake.log if m == "GET" and not p.startswith("/issues")]
        assert sorted(lookups) == ["/priorities", "/projects/NOC", "/projects/NOC/issueTypes",
                                   "/projects/NOC/statuses"]


async def test_an_outage_of_three_hours_creates_no_issue_twice(store: Store) -> None:
    emails = addresses(20)
    await subscribed(store, emails)
    async with rig(store) as r:
        await r.reconciler.run_once()  # resolves the project while Backlog is up
        await r.bounce(*emails)
        now = r.clock.wall()
        r.fake.faults = [
            # The worst kind: Backlog creates the issue but the answer is lost.
            Fault(500, "POST", "/issues", times=1, applied=True),
            Fault("disconnect", "POST", "/issues", times=1, applied=True),
            Fault(503, until=now + 3 * 3600),  # then down for three hours
        ]
        delays: list[float] = []
        with structlog.testing.capture_logs() as logs:
            for _ in range(40):
                await r.reconciler.run_once()
                if r.reconciler.health.state == "ok":
                    break
                assert r.reconciler.health.state == "down"
                delays.append(r.reconciler.next_delay())
                r.clock.advance(timedelta(seconds=delays[-1]))
        assert r.reconciler.health.state == "ok"
        assert r.clock.wall() >= now + 3 * 3600
        # It backed off while Backlog was down, up to a quarter of an hour between rounds.
        assert max(delays) > r.reconciler.interval and max(delays) <= 900 * 1.1
        assert len(delays) < 30

        assert len(r.fake.issues) == 20  # two of them were created "blind"
        summaries = [i.summary for i in r.fake.issues.values()]
        assert len(set(summaries)) == 20
        # The two blind creates were looked for by marker before anything else was done.
        blind = [t.marker for t in (await store.list_tickets())[0] if t.id in (1, 2)]
        assert set(blind) <= set(r.fake.keywords)
        assert any(e["event"] == "Backlog issue found by its marker; not created again"
                   for e in logs)
        assert API_KEY not in repr(logs)
        assert (await store.list_tickets(state="open"))[1] == 20


async def test_a_lost_201_is_found_even_when_the_search_index_lags(store: Store) -> None:
    await subscribed(store, ["lag@isp.example.jp"])
    async with rig(store) as r:
        await r.bounce("lag@isp.example.jp")
        r.fake.search_lag = 3600.0  # the keyword search finds nothing newer than an hour
        r.fake.faults = [Fault("disconnect", "POST", "/issues", times=1, applied=True)]
        await r.reconciler.run_once()
        assert r.reconciler.health.state == "down" and len(r.fake.issues) == 1
        r.clock.advance(timedelta(minutes=2))
        for n in range(130):  # other people's issues, newer than ours: more than a page
            r.fake.add_issue(f"他の課題 {n}")
        await r.reconciler.run_once()
        assert r.reconciler.health.state == "ok"
        assert len(r.fake.issues) == 131  # ours was found, not created again
        [t], _ = await store.list_tickets()
        assert (t.state, t.issue_key) == ("open", "NOC-1")
        searches = [p for m, p, _ in r.fake.log if (m, p) == ("GET", "/issues")]
        assert len(searches) == 3  # the keyword search, then two pages of recent issues


async def test_a_lost_answer_to_a_comment_or_a_close_is_not_repeated(store: Store) -> None:
    await subscribed(store, ["a@isp.example.jp"])
    async with rig(store) as r:
        await r.bounce("a@isp.example.jp")
        await r.reconciler.run_once()
        await r.bounce("a@isp.example.jp")
        r.fake.faults = [Fault("disconnect", "POST", "/issues/", times=1, applied=True)]
        await r.reconciler.run_once()
        assert r.reconciler.health.state == "down"
        await r.reconciler.run_once()
        [issue] = r.fake.issues.values()
        assert len(issue.comments) == 1  # looked for by its marker, not posted again
        assert (await store.ticket_counts())["comments_pending"] == 0

        r.clock.advance(timedelta(hours=25))
        r.fake.faults = [Fault(502, "PATCH", "/issues/", times=1, applied=True)]
        await r.reconciler.run_once()
        assert r.reconciler.health.state == "down"
        await r.reconciler.run_once()
        assert issue.status_id == 4 and len(issue.comments) == 2
        assert r.fake.count("PATCH", "/issues/") == 1
        assert (await store.list_tickets(state="closed"))[1] == 1


# -- cases handled by people, the guard, lifted suppressions -------------------------


async def test_issues_closed_or_deleted_by_hand_are_left_alone(store: Store) -> None:
    emails = ["a@isp.example.jp", "b@isp.example.jp", "c@isp.example.jp"]
    await subscribed(store, emails)
    async with rig(store) as r:
        await r.bounce(*emails)
        await r.reconciler.run_once()
        keys = {i.summary.split(" ")[2]: i.key for i in r.fake.issues.values()}
        r.fake.close_by_hand(keys["a@isp.example.jp"])
        r.fake.delete_by_hand(keys["b@isp.example.jp"])
        await r.bounce("b@isp.example.jp")  # a comment owed to a deleted issue
        await r.reconciler.run_once()
        states = {t.email: (t.state, t.close_reason)
                  for t in (await store.list_tickets())[0]}
        assert states == {"a@isp.example.jp": ("closed", "Backlog 上で手動で完了にされました"),
                          "b@isp.example.jp": ("gone", "Backlog 上で削除されました"),
                          "c@isp.example.jp": ("open", None)}
        assert (await store.ticket_counts())["comments_pending"] == 0

        r.clock.advance(timedelta(days=2))
        await r.reconciler.run_once()
        assert r.fake.count("PATCH", "/issues/") == 1  # only c's issue is closed by jpixd
        assert r.fake.by_key(keys["c@isp.example.jp"]).status_id == 4
        assert r.fake.count("POST", f"/issues/{keys['b@isp.example.jp']}") == 0

        await r.bounce("a@isp.example.jp")  # bounces again: a new case, a new issue
        await r.reconciler.run_once()
        assert len(r.fake.issues) == 3 + 1 - 1  # b's was deleted
        assert (await store.list_tickets(email="a@isp.example.jp", state="open"))[1] == 1


async def test_a_guard_pause_opens_a_high_priority_issue_and_a_resume_closes_it(
        store: Store) -> None:
    async with rig(store) as r:
        paused = r.clock()
        await store.set_sending(paused=True, reason="bounce rate 4.00% (8/200)",
                                actor="guard", now=paused)
        assert await store.request_guard_ticket(reason="bounce rate 4.00% (8/200)",
                                                paused_at=paused, now=paused)
        await r.reconciler.run_once()
        [issue] = r.fake.issues.values()
        assert issue.priority_id == 2 and "一時停止" in issue.summary
        assert "bounce rate 4.00% (8/200)" in issue.description

        r.clock.advance(timedelta(days=3))
        await r.reconciler.run_once()  # still paused: still open, however long
        assert issue.status_id == 1

        await store.set_sending(paused=False, reason="resumed by admin", actor="admin",
                                now=r.clock())
        await r.reconciler.run_once()
        assert issue.status_id == 4
        assert issue.comments == ["送信が再開されたため（admin）、jpixd が自動的に完了にしました。"]


async def test_issue_texts_show_times_in_the_configured_timezone(store: Store) -> None:
    """Issue 13: Backlog texts hard-coded JST whatever `timezone` said."""
    await subscribed(store, ["jst@isp.example.jp", "utc@isp.example.jp"])
    async with rig(store) as r:
        await r.bounce("jst@isp.example.jp")  # the default: Asia/Tokyo
        store.tz = UTC  # what `timezone = "UTC"` (or its reload) sets
        await r.bounce("utc@isp.example.jp")
        assert await store.request_guard_ticket(reason="bounce rate 4.00% (8/200)",
                                                paused_at=r.clock(), now=r.clock())
        await r.reconciler.run_once()
        by_summary = {i.summary: i.description for i in r.fake.issues.values()}
        jst = by_summary["[jpixd] バウンス: jst@isp.example.jp (Permanent/General)"]
        utc = by_summary["[jpixd] バウンス: utc@isp.example.jp (Permanent/General)"]
        [guard] = [d for s, d in by_summary.items() if "一時停止" in s]
        assert "- 発生日時: 2026-11-29 09:00:05 JST" in jst  # START is 00:00:05 UTC
        assert "- 発生日時: 2026-11-29 00:00:05 UTC" in utc
        assert "- 停止日時: 2026-11-29 00:00:05 UTC" in guard


async def test_a_lifted_suppression_or_a_removed_subscriber_closes_the_issue(
        store: Store) -> None:
    await subscribed(store, ["lift@isp.example.jp", "gone@isp.example.jp"])
    async with rig(store) as r:
        await r.bounce("lift@isp.example.jp", "gone@isp.example.jp")
        await r.reconciler.run_once()
        assert await store.lift_suppression("lift@isp.example.jp", by="admin", now=r.clock())
        [sub], _ = await store.list_subscribers(email="gone@isp.example.jp")
        assert sub.id is not None and await store.delete_subscriber(sub.id, r.clock())
        await r.reconciler.run_once()
        by = {i.summary.split(" ")[2]: i for i in r.fake.issues.values()}
        lifted, gone = by["lift@isp.example.jp"], by["gone@isp.example.jp"]
        assert lifted.status_id == gone.status_id == 4
        assert "admin によって解除" in lifted.comments[0]
        assert "解除されたため" in lifted.comments[1]
        assert gone.comments == ["このアドレスの購読者がいなくなった（削除または変更された）"
                                 "ため、jpixd が自動的に完了にしました。"]


async def test_a_refused_create_is_kept_and_tried_again_later(store: Store) -> None:
    await subscribed(store, ["a@isp.example.jp", "b@isp.example.jp"])
    async with rig(store) as r:
        await r.bounce("a@isp.example.jp", "b@isp.example.jp")
        r.fake.faults = [Fault(400, "POST", "/issues", times=1)]
        await r.reconciler.run_once()
        assert len(r.fake.issues) == 1  # the other case went on
        [refused], _ = await store.list_tickets(state="intent")
        assert refused.last_error and "HTTP 400" in refused.last_error
        # An hour after the refusal (the clock moved a second since, for the other create).
        assert refused.next_try_at is not None
        assert START + timedelta(hours=1) <= refused.next_try_at <= r.clock() + timedelta(hours=1)
        await r.reconciler.run_once()
        assert len(r.fake.issues) == 1  # not before its time
        r.clock.advance(timedelta(hours=1))
        await r.reconciler.run_once()
        assert len(r.fake.issues) == 2
        assert r.fake.keywords == []  # a 4xx created nothing: no marker search


# -- the client's conventions ----------------------------------------------------------


async def test_the_fake_is_strict_about_json_bodies_and_the_api_key(store: Store) -> None:
    async with rig(store) as r, aiohttp.ClientSession() as http:
        url = r.fake.base + "/api/v2/issues"
        async with http.post(url, params={"apiKey": API_KEY},
                             json={"projectId": 101, "summary": "s", "issueTypeId": 501,
                                   "priorityId": 3}) as resp:
            assert resp.status == 400
            assert (await resp.json())["errors"][0]["code"] == 7
        async with http.get(url, params={"apiKey": "wrong"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["errors"][0]["code"] == 11
        assert r.fake.issues == {}


async def test_calls_made_at_the_same_time_go_one_at_a_time(store: Store) -> None:
    async with rig(store) as r:
        results = await asyncio.gather(*(r.client.priorities() for _ in range(5)),
                                       r.client.project("NOC"), r.client.statuses("NOC"))
        assert len(results) == 7 and r.fake.max_inflight == 1


async def test_rate_limits_are_honoured_before_and_after_a_429(store: Store) -> None:
    async with rig(store, limit=5) as r, aiohttp.ClientSession() as http:
        for _ in range(5):  # another program of the same user spends the window
            async with http.get(r.fake.base + "/api/v2/priorities",
                                params={"apiKey": API_KEY}):
                pass
        window_end = (int(r.clock.wall()) // 60 + 1) * 60
        await r.client.priorities()  # 429, waits for Reset, then succeeds
        assert r.clock.wall() >= window_end
        assert r.fake.count("GET", "/priorities", 429) == 1
        for _ in range(9):  # two windows' worth: the client waits, never hits 429 again
            await r.client.priorities()
        assert r.fake.count("GET", "/priorities", 429) == 1
        assert r.fake.count("GET", "/priorities", 200) == 5 + 10
        # The client's view of the window is the server's (from X-RateLimit-*).
        start, used = r.fake.windows["read"]
        assert (r.client.limits["read"].remaining, r.client.limits["read"].reset) == (
            r.fake.limit - used, start + 60)


async def test_reads_are_retried_writes_and_refusals_are_not(store: Store) -> None:
    async with rig(store) as r:
        r.fake.faults = [Fault(502, "GET", "/priorities", times=2)]
        assert [p["id"] for p in await r.client.priorities()] == [2, 3, 4]
        assert r.fake.count("GET", "/priorities") == 3

        r.fake.faults = [Fault(500, "POST", "/issues", times=1)]
        with pytest.raises(BacklogUnavailable) as down:
            await r.client.create_issue(project_id=101, summary="s", issue_type_id=501,
                                        priority_id=3, description="d")
        assert r.fake.count("POST", "/issues") == 1

        with pytest.raises(BacklogRejected) as refused:
            await r.client.create_issue(project_id=101, summary="s", issue_type_id=999,
                                        priority_id=3, description="d")
        assert (refused.value.status, refused.value.code) == (400, 7)
        assert r.fake.count("POST", "/issues") == 2

        r.fake.faults = [Fault("hang", "POST", "/issues/", times=1)]
        with pytest.raises(BacklogUnavailable) as hung:  # the real 1 s timeout
            await r.client.add_comment("NOC-1", "x")
        for exc in (down.value, refused.value, hung.value):
            assert API_KEY not in str(exc)


async def test_wrong_settings_are_reported_clearly_and_nothing_is_sent(store: Store) -> None:
    async with rig(store) as r:
        wrong_key = Secret("test", "wrong-key-123")
        bad = [(backlog_config(r.fake.base, api_key=wrong_key), "backlog.api_key"),
               (backlog_config(r.fake.base, project_key="NOPE"), "no project 'NOPE'"),
               (backlog_config(r.fake.base, issue_type="障害"),
                "'障害' is not a issue_type of project NOC (it has: バウンス (501), タスク (502))"),
               (backlog_config(r.fake.base, close_status_id=9), "close_status_id")]
        for cfg, message in bad:
            client = r.client if cfg.api_key.get() == API_KEY else BacklogClient(
                r.http, r.fake.base, cfg.api_key.get(), metrics=r.reconciler.metrics,
                wall=r.clock.wall, monotonic=r.clock.wall, sleep=r.clock.sleep)
            with pytest.raises(BacklogConfigError) as exc:
                await resolve(client, cfg)
            assert message in str(exc.value)
        # The Japanese space's 中 is the config's "Normal"; ids work too.
        assert (await resolve(r.client, backlog_config(r.fake.base, priority="中"))
                ).priority_id == 3
        assert (await resolve(r.client, backlog_config(r.fake.base, issue_type="502"))
                ).issue_type_id == 502

        await subscribed(store, ["a@isp.example.jp"])
        await r.bounce("a@isp.example.jp")
        wrong = Reconciler(r.client, backlog_config(r.fake.base, issue_type="障害"), store,
                           r.reconciler.metrics, r.clock)
        await wrong.run_once()
        assert wrong.health.state == "misconfigured" and "障害" in (wrong.health.error or "")
        assert r.fake.issues == {} and (await store.list_tickets(state="intent"))[1] == 1


async def test_a_refused_listing_is_reported_and_does_not_crash_the_loop(store: Store) -> None:
    await subscribed(store, ["a@isp.example.jp"])
    async with rig(store) as r:
        await r.bounce("a@isp.example.jp")
        await r.reconciler.run_once()
        r.fake.faults = [Fault(400, "GET", "/issues", times=1)]
        await r.reconciler.run_once()  # a raise here would be a loop crash
        assert r.reconciler.health.state == "misconfigured"
        assert "list_issues: HTTP 400" in (r.reconciler.health.error or "")
        await r.reconciler.run_once()  # resolves again, then carries on
        assert r.reconciler.health.state == "ok"


async def test_a_key_revoked_mid_round_stops_the_round_and_blames_no_case(
        store: Store) -> None:
    await subscribed(store, ["a@isp.example.jp", "b@isp.example.jp"])
    async with rig(store) as r:
        await r.reconciler.run_once()  # resolved with the good key
        await r.bounce("a@isp.example.jp", "b@isp.example.jp")
        r.fake.api_key = "rotated-in-backlog"
        await r.reconciler.run_once()
        assert r.reconciler.health.state == "misconfigured"
        assert "HTTP 401" in (r.reconciler.health.error or "")
        cases_, _ = await store.list_tickets(state="intent")
        assert len(cases_) == 2 and all(t.last_error is None for t in cases_)
        assert r.fake.count("POST", "/issues") == 1  # stopped at the first refusal
        r.fake.api_key = API_KEY
        await r.reconciler.run_once()
        assert r.reconciler.health.state == "ok" and len(r.fake.issues) == 2


def test_close_rules_for_guard_takeovers_and_soft_bounces_that_stopped() -> None:
    paused = START
    guard = cases.CaseFacts(kind="guard", created_at=paused, last_event_at=paused,
                            has_subscriber=True, suppressed=False, lifted_at=None)
    still = SendingState(paused=True, actor="guard", since=paused)
    assert cases.close_reason(guard, still, START + timedelta(days=9), timedelta(hours=24)) \
        is None
    by_admin = SendingState(paused=True, actor="admin", since=paused + timedelta(hours=1))
    assert "admin に引き継がれた" in (cases.close_reason(guard, by_admin, START,
                                                      timedelta(hours=24)) or "")

    soft = cases.CaseFacts(kind="bounce", created_at=START, last_event_at=START,
                           has_subscriber=True, suppressed=False, lifted_at=None)
    running = SendingState(paused=False)
    assert cases.close_reason(soft, running, START + timedelta(hours=23),
                              timedelta(hours=24)) is None
    assert cases.close_reason(soft, running, START + timedelta(days=7), timedelta(days=7)) == (
        "最後のバウンスから 7 日 新たなバウンスがないため、jpixd が自動的に完了にしました。")


async def test_a_refused_close_waits_an_hour_before_it_is_tried_again(store: Store) -> None:
    await subscribed(store, ["a@isp.example.jp"])
    async with rig(store) as r:
        await r.bounce("a@isp.example.jp")
        await r.reconciler.run_once()
        r.clock.advance(timedelta(hours=25))
        r.fake.faults = [Fault(400, "PATCH", "/issues/", times=1)]
        await r.reconciler.run_once()
        [t], _ = await store.list_tickets()
        assert t.state == "closing" and t.last_error and "HTTP 400" in t.last_error
        await r.reconciler.run_once()
        assert r.fake.count("PATCH", "/issues/") == 1  # not again within the hour
        r.clock.advance(timedelta(hours=1))
        await r.reconciler.run_once()
        assert r.fake.count("PATCH", "/issues/") == 2
        assert (await store.list_tickets(state="closed"))[1] == 1


async def test_an_odd_project_id_is_a_settings_error_not_a_dead_daemon(store: Store) -> None:
    """Security probe L9: {"id": "not-a-number"} killed the daemon."""
    async with rig(store) as r:
        r.fake.project_body = {**r.fake.project_body, "id": "not-a-number"}
        await r.reconciler.run_once()
        assert r.reconciler.health.state == "misconfigured"
        assert "numeric project id" in (r.reconciler.health.error or "")


async def test_a_case_our_code_cannot_record_is_quarantined_and_the_others_go_on(
        store: Store, backend: str) -> None:
    """Issue 12's crash barrier: one case whose answer makes our code raise (an issue id
    past what the database holds) waits an hour with its incident id; the other case is
    filed in the same round."""
    async with rig(store) as r:
        def odd_id(issue: Any) -> None:
            if "odd@" in issue.summary:
                issue.id = 10**30

        r.fake.after_create = odd_id
        await subscribed(store, ["odd@isp.example.jp", "fine@isp.example.jp"])
        await r.bounce("odd@isp.example.jp", "fine@isp.example.jp")
        await r.reconciler.run_once()
        assert r.reconciler.health.state == "ok"
        by_email = {t.email: t for t in (await store.list_tickets())[0]}
        assert by_email["fine@isp.example.jp"].state == "open"
        odd = by_email["odd@isp.example.jp"]
        assert odd.state != "open" and "incident" in (odd.last_error or "")
        [q] = await store.quarantined("backlog")
        # Each database's own words for a number past 64 bits.
        assert {"sqlite": "OverflowError", "postgres": "out of int64 range"}[backend] \
            in str(q["reason"])
        assert r.reconciler.metrics.registry.get_sample_value(
            "jpixd_unit_errors_total", {"unit": "backlog_case"}) == 1
