"""The operator console (`/console/` on the operator listener): what the admin API does,
as pages, for a person.

Login is with the admin token, into a session cookie (HttpOnly, SameSite=Strict, 12 h)
signed with a key derived from that token: rotating the token ends every session. Every
action is a POST with a CSRF token bound to the session. Logins are rate-limited per
client address.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiohttp import web
from multidict import MultiDictProxy

from jpixd.bounces.rules import guard_since, judge
from jpixd.channels.csvimport import import_channels
from jpixd.channels.manage import ChannelInvalid
from jpixd.model import (
    Change,
    DeliveryState,
    Subscriber,
    SubscriberStatus,
    notice_from_json,
)
from jpixd.outbox import retry_action
from jpixd.prefectures import NAME_BY_CODE, REGIONS
from jpixd.runtime import Runtime
from jpixd.store.base import from_db
from jpixd.subscribers import Invalid, parse_csv
from jpixd.timeline import badge
from jpixd.web import admin, channelforms, chart
from jpixd.web.channelforms import Answer
from jpixd.web.deliveries import Refusal, send_now
from jpixd.web.guard import (
    CSRF_FIELD,
    Handler,
    Proxies,
    RateLimit,
    headers_middleware,
    nul_parameter,
    read_form,
)
from jpixd.web.keys import RUNTIME
from jpixd.web.links import Signer
from jpixd.web.pages import (
    form_values,
    page,
    posted_settings,
    settings_changes,
    static_routes,
)
from jpixd.web.syndication import windows_of
from jpixd.web.words import (
    channel_problem_in_words,
    csv_problem_in_words,
    import_diff_in_words,
)

log = structlog.get_logger("jpixd.console")

COOKIE = "jpixd_console"
SESSION = 12 * 3600
PREFIX = "/console"
LOGIN_LIMIT = web.AppKey("console_login_limit", RateLimit)
PROXIES = web.AppKey("console_proxies", Proxies)
SESSION_KEY = web.RequestKey("console_session", str)


def _signer(rt: Runtime) -> Signer:
    return Signer([hashlib.sha256(b"jpixd-console\0" + rt.admin_token.encode()).hexdigest()])


def _session(request: web.Request) -> str | None:
    """The session cookie (`nonce.expiry.mac`), if it is ours and not expired; whether
    it was logged out is the store's to say (`console_auth`)."""
    value = request.cookies.get(COOKIE, "")
    nonce, _, rest = value.partition(".")
    expires, _, mac = rest.partition(".")
    if not (len(nonce) == 32 and nonce.isascii() and nonce.isalnum()) or not mac:
        return None
    if not (expires.isascii() and expires.isdigit() and len(expires) < 12):
        return None
    if int(expires) < time.time():
        return None
    return value if _signer(request.app[RUNTIME]).check_digest(
        f"session|{nonce}|{expires}", mac) else None


def _new_session(rt: Runtime) -> str:
    """A session of its own for every login (a random nonce: two logins in one second
    are two sessions, and logging one out leaves the other)."""
    nonce, expires = secrets.token_hex(16), str(int(time.time()) + SESSION)
    return f"{nonce}.{expires}.{_signer(rt).digest(f'session|{nonce}|{expires}')}"


def _csrf(request: web.Request, session: str) -> str:
    return _signer(request.app[RUNTIME]).digest(f"console-csrf|{session}")


@web.middleware
async def console_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(PREFIX) or request.path in (f"{PREFIX}/login",):
        return await handler(request)
    session = _session(request)
    if session is None or await request.app[RUNTIME].store.console_session_ended(
            session.partition(".")[0]):
        raise web.HTTPSeeOther(f"{PREFIX}/login")
    bad = nul_parameter(request)
    if bad is not None:
        return _show(request, "console/message.html", 400, heading="検索条件が正しくありません",
                     lines=[f"{bad} に使えない文字（NUL）が含まれています。"])
    if request.method == "POST":
        form = await read_form(request)
        given = form.get(CSRF_FIELD)
        if not isinstance(given, str) or not hmac.compare_digest(
                given.encode("utf-8", "surrogateescape"), _csrf(request, session).encode()):
            return _show(request, "console/message.html", 403, heading="操作を受け付けません",
                         lines=["フォームの有効期限が切れたか、別のサイトから送信されました。"
                                "ページを開き直してから操作してください。"])
    request[SESSION_KEY] = session
    return await handler(request)


def _show(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    rt = request.app[RUNTIME]
    session = request.get(SESSION_KEY) or _session(request)
    return page(rt.config.tz, name, status, csrf=_csrf(request, session) if session else "",
                logged_in=session is not None, path=request.path, **context)


# --------------------------------------------------------------------------- login


async def login_form(request: web.Request) -> web.Response:
    return _show(request, "console/login.html", error=None)


async def login(request: web.Request) -> web.Response:
    """The right token always logs in. Wrong ones are limited per client: the limit is
    counted after the token is checked, so that nobody who can reach this page (behind a
    proxy not in trusted_proxies every operator shares one address) can lock the
    operators out; a 16-character token is not found by guessing anyway."""
    rt = request.app[RUNTIME]
    client = request.app[PROXIES].client(request)
    form = await read_form(request)
    token = form.get("token")
    if not isinstance(token, str) or not hmac.compare_digest(
            token.strip().encode("utf-8", "surrogateescape"), rt.admin_token.encode()):
        if not request.app[LOGIN_LIMIT].allow(request.app[PROXIES].limit_key(request)):
            log.warning("console login refused: too many attempts", client=client)
            return _show(request, "console/login.html", 429,
                         error="試行回数が多すぎます。しばらくしてからお試しください。")
        log.warning("console login failed", client=client)
        return _show(request, "console/login.html", 401, error="トークンが正しくありません。")
    log.info("console login", client=client)
    response = web.HTTPSeeOther(f"{PREFIX}/")
    response.set_cookie(COOKIE, _new_session(rt), path=PREFIX, httponly=True,
                        samesite="Strict", secure=request.app[PROXIES].secure(request),
                        max_age=SESSION)
    raise response


async def logout(request: web.Request) -> web.Response:
    """Ends this session for good (on every host), not only in this browser: a copied
    cookie is refused after it."""
    session = request.get(SESSION_KEY) or _session(request)
    if session is not None:
        nonce, expires = session.split(".")[:2]
        await request.app[RUNTIME].store.end_console_session(
            nonce, datetime.fromtimestamp(int(expires), UTC))
        log.info("console logout")
    response = web.HTTPSeeOther(f"{PREFIX}/login")
    response.del_cookie(COOKIE, path=PREFIX)
    raise response


# --------------------------------------------------------------------------- status


async def status(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    now = rt.clock()
    sending = await rt.store.sending_state()
    counts = await rt.store.delivery_counts()
    verdict = judge(*await rt.store.guard_counts(guard_since(now, rt.config.bounces, sending)),
                    rt.config.bounces)
    rate, quota = rt.outbound.bucket.rate, rt.outbound.quota
    sources = []
    for src in rt.config.sources:
        sources.append((src, await rt.store.source_state(src.name)))
    activity = await rt.store.hourly_activity(now - timedelta(days=7))
    ready, reasons = rt.supervisor.healthy()
    return _show(
        request, "console/status.html", sending=sending, counts=counts, ready=ready,
        reasons=reasons, oldest_age=await rt.store.oldest_pending_age(now),
        verdict=verdict, bounces=rt.config.bounces, rate=rate, quota=quota,
        loops=rt.supervisor.status, sources=sources, transport=rt.config.mail.transport,
        chart=chart.svg(activity, now, rt.config.tz), totals=chart.totals(activity),
        suppressed=await rt.store.suppressed_count(), mode=await rt.store.mode(),
        archive=(await rt.store.archive_pending()) if rt.config.archive else None,
        self_service=await admin.self_service_status(rt),
        cluster=rt.cluster, channel_troubles=await rt.store.channels_in_trouble())


async def set_sending(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    form = await read_form(request)
    paused = form.get("action") == "pause"
    reason = form.get("reason")
    reason = reason.strip()[:500] if isinstance(reason, str) and reason.strip() else None
    if paused and form.get("confirm") != "yes":
        # Every mail stops: the operator is told what that means and asked again.
        return _show(request, "console/pause.html", reason=reason or "",
                     counts=await rt.store.delivery_counts(),
                     oldest_age=await rt.store.oldest_pending_age(rt.clock()))
    await admin.set_sending(rt, paused=paused, reason=reason, actor="console")
    raise web.HTTPSeeOther(f"{PREFIX}/")


# --------------------------------------------------------------------------- notices


async def notices(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    q = request.query
    status_filter = q.get("status") or None
    kind = q.get("kind") if q.get("kind") in ("construction", "failure") else None
    items, total = await rt.store.list_notices(status=status_filter, kind=kind, limit=100)
    return _show(request, "console/notices.html", notices=items, total=total,
                 status_filter=status_filter or "", kind=kind or "",
                 badge=functools.partial(badge, now=rt.clock()))


async def notice(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    nid = _int(request.match_info["id"])
    stored = await rt.store.get_notice(nid) if nid is not None else None
    if stored is None:
        return _show(request, "console/message.html", 404, heading="お知らせがありません",
                     lines=[f"#{request.match_info['id']} はありません。"])
    deliveries, dtotal = await rt.store.list_deliveries(notice_id=stored.id, limit=200)
    revisions = await rt.store.revisions(stored.id)
    # The mail as it reads now: the last mailed report's kind of change, to a subscriber
    # who gave no name (what most of a notice's recipients see, bar their own links).
    change = next((r.change for r in reversed(revisions) if r.change.mailed), Change.NEW)
    preview, links = None, None
    if rt.renderer is not None and revisions:
        renderer = rt.renderer()
        # The latest report as recorded: the notice with what that report changed.
        preview = renderer.texts(notice_from_json(revisions[-1].content), change,
                                 Subscriber(email=""), rt.clock(), stored.id)
        links = renderer.links
    return _show(request, "console/notice.html", s=stored, revisions=revisions,
                 counts=await rt.store.notice_delivery_counts(stored.id),
                 deliveries=deliveries, dtotal=dtotal, names=NAME_BY_CODE,
                 windows=windows_of(stored), preview=preview, preview_change=change,
                 badge=functools.partial(badge, now=rt.clock()),
                 public_url=links.notice(stored.id) if links is not None else None)


# --------------------------------------------------------------------------- deliveries


async def deliveries(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    state = request.query.get("state") or "failed"
    if state not in {str(s) for s in DeliveryState}:
        state = "failed"
    items, total = await rt.store.list_deliveries(state=state, limit=200)
    return _show(request, "console/deliveries.html", deliveries=items, total=total,
                 state=state, states=[str(s) for s in DeliveryState],
                 retryable=retry_action(DeliveryState(state)) is not None,
                 counts=await rt.store.delivery_counts(), now=rt.clock())


async def retry(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    did = _int(request.match_info["id"])
    back = _back(await read_form(request), f"{PREFIX}/deliveries")
    result = await send_now(rt, did, actor="console") if did is not None else None
    if result is None or isinstance(result, Refusal):
        return _show(request, "console/message.html", 409, heading="送れません",
                     lines=[result.message if result else "配信番号が正しくありません。"])
    raise web.HTTPSeeOther(back)


# --------------------------------------------------------------------------- bounces


async def bounces(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    suppressions, stotal = await rt.store.list_suppressions(limit=200)
    events, _ = await rt.store.list_events(limit=100)
    return _show(request, "console/bounces.html", suppressions=suppressions, stotal=stotal,
                 events=[e for e in events if e["type"] in ("Bounce", "Complaint")])


async def lift(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    form = await read_form(request)
    email = form.get("email")
    if isinstance(email, str) and await rt.store.lift_suppression(
            email, by="console", now=rt.clock()):
        log.info("suppression lifted", email=email, actor="console")
        rt.wake("backlog")
    raise web.HTTPSeeOther(f"{PREFIX}/bounces")


# --------------------------------------------------------------------------- tickets


async def tickets(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    items, total = await rt.store.list_tickets(limit=200)
    base = rt.config.backlog.base_url.rstrip("/") if rt.config.backlog else None
    return _show(request, "console/tickets.html", tickets=items, total=total,
                 backlog_base=base, counts=await rt.store.ticket_counts())


# --------------------------------------------------------------------------- subscribers


async def subscribers(request: web.Request, *, flash: str | None = None,
                      errors: list[str] | None = None, diffs: list[str] | None = None,
                      status: int = 200) -> web.Response:
    rt = request.app[RUNTIME]
    q = request.query.get("q", "").strip()[:200]
    st = request.query.get("status") or None
    if st not in {None, *(str(s) for s in SubscriberStatus)}:
        st = None
    items, total = await rt.store.list_subscribers(query=q or None, status=st, limit=200)
    return _show(request, "console/subscribers.html", status, subscribers=items, total=total,
                 q=q, status_filter=st or "", statuses=[str(s) for s in SubscriberStatus],
                 flash=flash, errors=errors or [], diffs=diffs or [],
                 changes=await rt.store.subscriber_changes(limit=30))


async def subscriber(request: web.Request, *, flash: str | None = None,
                     form: dict[str, Any] | None = None,
                     errors: dict[str, str] | None = None, status: int = 200,
                     channel: Answer | None = None) -> web.Response:
    rt = request.app[RUNTIME]
    sid = _int(request.match_info["id"])
    sub = await rt.store.get_subscriber(sid) if sid is not None else None
    if sub is None or sub.id is None:
        return _show(request, "console/message.html", 404, heading="購読者がいません",
                     lines=[f"#{request.match_info['id']} はいないか、削除されています。"])
    channel = channel or Answer()
    messages, _ = await rt.store.list_channel_messages(subscriber_id=sub.id, limit=20)
    for m in messages:  # the API's text, a time again for the page
        m["created_at"] = from_db(m["created_at"])
    return _show(request, "console/subscriber.html", status, sub=sub,
                 flash=flash or channel.flash, form=form or form_values(sub),
                 errors=errors or {}, regions=REGIONS, names=NAME_BY_CODE,
                 statuses=[str(s) for s in SubscriberStatus],
                 changes=await rt.store.subscriber_changes(sub.id),
                 channels=await rt.store.channels_of(sub.id), channel_messages=messages,
                 channel_errors=channel.errors, channel_typed=channel.form)


async def subscriber_channels(request: web.Request) -> web.Response:
    """Add, test, pause, resume or remove one of the subscriber's channels."""
    rt = request.app[RUNTIME]
    sid = _int(request.match_info["id"])
    form = await read_form(request)
    if sid is None or await rt.store.get_subscriber(sid) is None:
        raise web.HTTPNotFound()
    answer = await channelforms.act(rt, sid, form, actor="console")
    return await subscriber(request, channel=answer, status=400 if answer.errors else 200)


async def subscriber_save(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    sid = _int(request.match_info["id"])
    form = await read_form(request)
    shown = posted_settings(form)  # the same fields, parsed as the self-service pages do
    try:
        changes = settings_changes(
            shown, status=_one(form, "status"), paused=form.get("paused") == "1",
            failure_respects_windows=form.get("failure_respects_windows") == "1")
    except Invalid as exc:
        return await subscriber(request, form=shown, errors=dict(exc.fields), status=400)
    if sid is None or await rt.store.update_subscriber(sid, changes, rt.clock(),
                                                       actor="console") is None:
        raise web.HTTPNotFound()
    log.info("subscriber changed", subscriber_id=sid, actor="console")
    return await subscriber(request, flash="保存しました。")


async def subscribers_import(request: web.Request) -> web.Response:
    """A CSV upload, checked whole (all rows or none, each bad row with its line), then
    applied exactly as `jpixd subscribers import` would (opted-out addresses stay so)."""
    rt = request.app[RUNTIME]
    form = await read_form(request)
    upload = form.get("file")
    data = upload.file.read() if isinstance(upload, web.FileField) else b""
    if not data:
        return await subscribers(request, errors=["CSV ファイルを選んでください。"], status=400)
    rows, problems = parse_csv(data, allow_http=rt.config.channels.allow_http)
    if problems:
        return await subscribers(
            request, errors=[csv_problem_in_words(p) for p in problems[:50]], status=400)
    dry = form.get("dry_run") == "1"
    result = await rt.store.import_subscribers([(r.subscriber, r.columns) for r in rows],
                                               rt.clock(), dry_run=dry)
    try:
        channels = await import_channels(rt.store, rows, "console", dry_run=dry,
                                         now=rt.clock())
    except ChannelInvalid as exc:
        return await subscribers(request, status=400, errors=[
            "購読者は取り込みましたが、通知先は変えていません: " + channel_problem_in_words(
                exc.codes.get("channels", "")) + f"（{exc.fields.get('channels', exc)}）"])
    rt.wake("channels")
    log.info("subscribers imported", actor="console", dry_run=dry, created=result.created,
             updated=result.updated, unchanged=result.unchanged, kept=result.kept)
    what = "確認のみ（変更なし）" if dry else "取り込みました"
    return await subscribers(
        request, flash=f"{what}: 新規 {result.created} 件、更新 {result.updated} 件、"
                       f"変更なし {result.unchanged} 件、配信停止のまま {result.kept} 件",
        diffs=[import_diff_in_words(d) for d in [*(result.diffs if dry else []), *channels][:50]])


# --------------------------------------------------------------------------- helpers


def _int(raw: str) -> int | None:
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 12 else None


def _one(form: MultiDictProxy[Any], name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def _back(form: MultiDictProxy[Any], default: str) -> str:
    """Where to go after an action: a console path only (never another site)."""
    to = _one(form, "back")
    return to if to.startswith(f"{PREFIX}/") and "//" not in to else default


def routes() -> list[web.RouteDef]:
    p = PREFIX
    return [
        web.get(f"{p}/login", login_form), web.post(f"{p}/login", login),
        web.post(f"{p}/logout", logout),
        web.get(f"{p}/", status), web.get(p, _to_status),
        web.post(f"{p}/sending", set_sending),
        web.get(f"{p}/notices", notices), web.get(f"{p}/notices/{{id}}", notice),
        web.get(f"{p}/deliveries", deliveries),
        web.post(f"{p}/deliveries/{{id}}/retry", retry),
        web.get(f"{p}/bounces", bounces), web.post(f"{p}/suppressions/lift", lift),
        web.get(f"{p}/tickets", tickets),
        web.get(f"{p}/subscribers", subscribers),
        web.post(f"{p}/subscribers/import", subscribers_import),
        web.get(f"{p}/subscribers/{{id}}", subscriber),
        web.post(f"{p}/subscribers/{{id}}", subscriber_save),
        web.post(f"{p}/subscribers/{{id}}/channels", subscriber_channels),
    ]


async def _to_status(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(f"{PREFIX}/")


def setup(app: web.Application, proxies: Proxies) -> None:
    """The console on the operator app: its pages, the static files, its headers."""
    app[LOGIN_LIMIT] = RateLimit(10, window=900.0)
    app[PROXIES] = proxies
    app.add_routes(routes())
    app.add_routes(static_routes())


MIDDLEWARES = (headers_middleware, console_auth)
