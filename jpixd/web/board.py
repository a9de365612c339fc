"""The public notice board: `/notices` (current failures, upcoming construction, what
ended lately), one notice with its reports, and the same as Atom and iCalendar for any
filter — or, at a signed URL, for one subscriber's own settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from jpixd.fanout import matches
from jpixd.mail.render import CARRIER_LABELS, KIND_LABELS
from jpixd.model import NoticeKind, NoticeStatus, StoredNotice
from jpixd.prefectures import NAME_BY_CODE, PREFECTURES, code_of
from jpixd.runtime import Runtime
from jpixd.web import syndication
from jpixd.web.context import PUBLIC
from jpixd.web.keys import RUNTIME
from jpixd.web.links import Purpose
from jpixd.web.pages import page

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


def _sections(notices: list[StoredNotice]) -> dict[str, list[StoredNotice]]:
    failures = [s for s in notices if s.notice.kind == NoticeKind.FAILURE
                and s.notice.status in (NoticeStatus.OCCURRED,
                                        NoticeStatus.PARTIALLY_RECOVERED)]
    works = sorted((s for s in notices if s.notice.kind == NoticeKind.CONSTRUCTION
                    and s.notice.status in (NoticeStatus.SCHEDULED, NoticeStatus.IN_PROGRESS,
                                            NoticeStatus.POSTPONED)),
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
    return page(rt.config.tz, "board.html", filters=filters, sections=_sections(notices),
                prefectures=PREFECTURES, names=NAME_BY_CODE, atom_url=f"/notices.atom{q}",
                ics_url=f"/notices.ics{q}", headline=syndication.headline,
                windows_of=syndication.windows_of)


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
    return page(rt.config.tz, "notice.html", s=stored, revisions=list(reversed(revisions)),
                names=NAME_BY_CODE, headline=syndication.headline,
                windows_of=syndication.windows_of)


def _feed_filters(request: web.Request) -> dict[str, str | None]:
    """A feed's filters; a bad one is a plain 400 (a feed reader shows no page)."""
    try:
        return _filters(request)
    except BadFilter as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


async def atom_feed(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    filters = _feed_filters(request)
    notices = (await _notices(rt, filters))[:_FEED_LIMIT]
    base = _base(request)
    body = syndication.atom(notices, base_url=base, title=_title(filters),
                            self_url=f"{base}/notices.atom{_query(filters)}", now=rt.clock())
    return web.Response(body=body, content_type="application/atom+xml", charset="utf-8")


async def ics_feed(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    filters = _feed_filters(request)
    if filters["kind"] == "failure":
        raise web.HTTPBadRequest(text="the calendar holds construction windows only")
    notices = (await _notices(rt, {**filters, "kind": "construction"}))[:_FEED_LIMIT]
    return _calendar(request, notices, _title(filters))


async def subscriber_ics(request: web.Request) -> web.Response:
    """One subscriber's calendar: the construction their settings match, at a signed URL
    that never expires while they exist (a calendar app polls it for years)."""
    rt, ctx = request.app[RUNTIME], request.app[PUBLIC]
    link = ctx.links.signer.verify(request.query.get("t", ""), Purpose.CALENDAR, rt.clock())
    sub = await rt.store.get_subscriber(link.subscriber_id) if link is not None else None
    if sub is None:
        rt.metrics.web_refusals.labels("bad_link").inc()
        raise web.HTTPNotFound(text="no such calendar")
    notices = await _notices(rt, {"carrier": None, "kind": "construction", "prefecture": None})
    mine = [s for s in notices if matches(sub, s.notice)][:_FEED_LIMIT]
    return _calendar(request, mine, "工事予定（ご登録の条件）")


def _calendar(request: web.Request, notices: list[StoredNotice], name: str) -> web.Response:
    rt = request.app[RUNTIME]
    body = syndication.ics(notices, base_url=_base(request), name=name, now=rt.clock())
    return web.Response(body=body, content_type="text/calendar", charset="utf-8",
                        headers={"Content-Disposition": 'inline; filename="jpixd.ics"'})


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
