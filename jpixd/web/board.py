"""The public notice board: `/notices` (current failures, upcoming construction, what
ended lately), one notice with its reports, and the same as Atom and iCalendar for any
filter — or, at a signed URL, for one subscriber's own settings."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Hashable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from jpixd.fanout import matches
from jpixd.mail.render import CARRIER_LABELS, KIND_LABELS
from jpixd.model import NoticeKind, NoticeStatus, StoredNotice
from jpixd.prefectures import NAME_BY_CODE, PREFECTURES, code_of
from jpixd.runtime import Runtime
from jpixd.timeline import badge, ended_by_time, today_works
from jpixd.web import syndication
from jpixd.web.context import PUBLIC
from jpixd.web.feedcache import Feed, respond
from jpixd.web.keys import RUNTIME
from jpixd.web.links import Purpose, webcal
from jpixd.web.pages import cacheable, page

RECENT = timedelta(days=7)  # ended notices stay on the board this long
_FEED_LIMIT = 200


class BadFilter(Exception):
    pass


def _filters(request: web.Request) -> dict[str, str | None]:
    q = request.query
    carrier = q.get("carrier") or None
    kind = q.get("kind") or None
    raw_pref = q.get("prefecture") or None
    if carrier is not None and carrier not in CARRIER_LABELS:
        raise BadFilter("通信事業者の指定が正しくありません")
    if kind is not None and kind not in KIND_LABELS:
        raise BadFilter("お知らせの種類の指定が正しくありません")
    prefecture = code_of(raw_pref) if raw_pref else None
    if raw_pref and prefecture is None:
        raise BadFilter("地域の指定が正しくありません")
    return {"carrier": carrier, "kind": kind, "prefecture": prefecture}


def _query(filters: dict[str, str | None]) -> str:
    given = {k: v for k, v in filters.items() if v}
    return ("?" + urlencode(given)) if given else ""


async def _notices(rt: Runtime, filters: dict[str, str | None]) -> list[StoredNotice]:
    return await rt.store.board_notices(since=rt.clock() - RECENT, carrier=filters["carrier"],
                                        kind=filters["kind"], prefecture=filters["prefecture"])


def _sections(notices: list[StoredNotice], now: datetime) -> dict[str, list[StoredNotice]]:
    failures = [s for s in notices if s.notice.kind == NoticeKind.FAILURE
                and s.notice.status in (NoticeStatus.OCCURRED,
                                        NoticeStatus.PARTIALLY_RECOVERED)]
    # A work whose last window has passed is over, whether or not NTT has said so.
    works = sorted((s for s in notices if s.notice.kind == NoticeKind.CONSTRUCTION
                    and s.notice.status in (NoticeStatus.SCHEDULED, NoticeStatus.IN_PROGRESS,
                                            NoticeStatus.POSTPONED)
                    and not ended_by_time(s.notice, now)),
                   key=lambda s: (s.notice.starts_at is None, s.notice.starts_at or s.first_seen))
    shown = {s.id for s in failures + works}
    return {"failures": failures, "works": works,
            "ended": [s for s in notices if s.id not in shown]}


def _base(request: web.Request) -> str:
    ctx = request.app[PUBLIC]
    return ctx.links.base_url


async def board(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    try:
        filters = _filters(request)
    except BadFilter as exc:
        return page(rt.config.tz, "message.html", 400, heading="お知らせ一覧",
                    lines=[str(exc)], link=("/notices", "すべてのお知らせ"))
    notices = await _notices(rt, filters)
    q = _query(filters)
    now = rt.clock()
    sections = _sections(notices, now)
    today = sum(1 for s in sections["works"]
                if today_works(syndication.windows_of(s), now))
    checks = [(src, await rt.store.source_state(src.name))
              for src in rt.config.sources if src.enabled]
    html = page(rt.config.tz, "board.html", filters=filters, sections=sections, today=today,
                checks=checks, badge=functools.partial(badge, now=now),
                prefectures=PREFECTURES, names=NAME_BY_CODE, atom_url=f"/notices.atom{q}",
                ics_url=f"/notices.ics{q}", webcal_url=webcal(f"{_base(request)}/notices.ics{q}"),
                headline=functools.partial(syndication.headline, now=now),
                windows_of=syndication.windows_of)
    return cacheable(request, html)


async def notice(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    raw = request.match_info["id"]
    stored = await rt.store.get_notice(int(raw)) if raw.isascii() and raw.isdigit() \
        and len(raw) < 12 else None
    if stored is None or stored.notice.status == NoticeStatus.WITHDRAWN:
        return page(rt.config.tz, "message.html", 404, heading="お知らせが見つかりません",
                    lines=["このお知らせは掲載されていません。"],
                    link=("/notices", "お知らせ一覧"))
    revisions = await rt.store.revisions(stored.id)
    now = rt.clock()
    html = page(rt.config.tz, "notice.html", s=stored, revisions=list(reversed(revisions)),
                names=NAME_BY_CODE, headline=functools.partial(syndication.headline, now=now),
                badge=functools.partial(badge, now=now), windows_of=syndication.windows_of)
    return cacheable(request, html)


def _feed_filters(request: web.Request) -> dict[str, str | None]:
    """A feed's filters; a bad one is a plain 400 (a feed reader shows no page)."""
    try:
        return _filters(request)
    except BadFilter as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


async def _board(request: web.Request) -> tuple[Hashable, list[StoredNotice]]:
    """What the notices are now, and every notice the board shows (bodies only as long
    as a feed shows them), read once per change for all the feeds."""
    rt, feeds = request.app[RUNTIME], request.app[PUBLIC].feeds
    version = await feeds.version(rt.store.notices_version)

    async def read() -> list[StoredNotice]:
        # Each notice comes with what its latest report changed, for its entry (a feed
        # reader, and Slack's or Teams' RSS connector, otherwise saw only a new date).
        return await rt.store.board_notices(
            since=rt.clock() - RECENT, body_limit=syndication.SUMMARY_BODY_LIMIT + 1)

    return version, await feeds.notices(version, read)


def _filtered(notices: list[StoredNotice], filters: dict[str, str | None]
              ) -> list[StoredNotice]:
    """As the store's filters: a notice naming no prefecture concerns every one."""
    carrier, kind, pref = filters["carrier"], filters["kind"], filters["prefecture"]
    return [s for s in notices
            if (carrier is None or s.notice.carrier == carrier)
            and (kind is None or s.notice.kind == kind)
            and (pref is None or not s.notice.prefectures or pref in s.notice.prefectures)]


async def _feed(request: web.Request, key: tuple[object, ...], version: Hashable,
                render: Callable[[], bytes], shown: list[StoredNotice]) -> Feed:
    """A feed from the cache, or rendered in a worker thread (a wordy board takes long
    enough to stall every loop sharing the event loop)."""
    rt = request.app[RUNTIME]

    async def build() -> tuple[bytes, datetime]:
        body = await asyncio.to_thread(render)
        return body, max((s.last_changed for s in shown), default=rt.clock())

    return await request.app[PUBLIC].feeds.get(key, version, build)


async def atom_feed(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    filters = _feed_filters(request)
    base = _base(request)
    version, notices = await _board(request)
    shown = _filtered(notices, filters)[:_FEED_LIMIT]
    feed = await _feed(request, ("atom", base, *filters.values()), version, lambda: (
        syndication.atom(shown, base_url=base, title=_title(filters),
                         self_url=f"{base}/notices.atom{_query(filters)}", now=rt.clock(),
                         memo=request.app[PUBLIC].feeds.part)),
        shown)
    return respond(request, feed, "application/atom+xml")


async def ics_feed(request: web.Request) -> web.Response:
    filters = _feed_filters(request)
    if filters["kind"] == "failure":
        raise web.HTTPBadRequest(text="the calendar holds construction windows only")
    version, notices = await _board(request)
    shown = _filtered(notices, {**filters, "kind": "construction"})[:_FEED_LIMIT]
    feed = await _feed(request, ("ics", _base(request), *filters.values()), version,
                       _calendar(request, shown, _title(filters)), shown)
    return respond(request, feed, "text/calendar", headers=_INLINE_ICS)


async def subscriber_ics(request: web.Request) -> web.Response:
    """One subscriber's calendar: the construction their settings match, at a signed URL
    that never expires while they exist (a calendar app polls it for years)."""
    rt, ctx = request.app[RUNTIME], request.app[PUBLIC]
    link = ctx.links.signer.verify(request.query.get("t", ""), Purpose.CALENDAR, rt.clock())
    sub = await rt.store.get_subscriber(link.subscriber_id) if link is not None else None
    if sub is None:
        rt.metrics.web_refusals.labels("bad_link").inc()
        raise web.HTTPNotFound(text="no such calendar")
    version, notices = await _board(request)
    works = _filtered(notices, {"carrier": None, "kind": "construction", "prefecture": None})
    shown = [s for s in works if matches(sub, s.notice)][:_FEED_LIMIT]
    # The subscriber's settings are part of what the calendar is.
    feed = await _feed(request, ("subscriber", _base(request), sub.id),
                       (version, sub.updated_at),
                       _calendar(request, shown, "工事予定（ご登録の条件）"), shown)
    return respond(request, feed, "text/calendar", private=True, headers=_INLINE_ICS)


_INLINE_ICS = {"Content-Disposition": 'inline; filename="jpixd.ics"'}


def _calendar(request: web.Request, shown: list[StoredNotice],
              name: str) -> Callable[[], bytes]:
    rt, base, memo = request.app[RUNTIME], _base(request), request.app[PUBLIC].feeds.part
    return lambda: syndication.ics(shown, base_url=base, name=name, now=rt.clock(),
                                   memo=memo)


def _title(filters: dict[str, Any]) -> str:
    parts = [CARRIER_LABELS.get(filters["carrier"] or "", ""),
             NAME_BY_CODE.get(filters["prefecture"] or "", ""),
             KIND_LABELS.get(filters["kind"] or "", "")]
    words = " ".join(p for p in parts if p)
    return f"工事・故障情報{('（' + words + '）') if words else ''}"


def routes() -> list[web.RouteDef]:
    return [web.get("/notices", board), web.get("/notices/{id}", notice),
            web.get("/notices.atom", atom_feed), web.get("/notices.ics", ics_feed),
            web.get("/s/calendar.ics", subscriber_ics), web.get("/", _home)]


async def _home(request: web.Request) -> web.Response:
    raise web.HTTPFound("/notices")
