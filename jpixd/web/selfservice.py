"""Subscriber self-service (`/s/…`) and one-click unsubscribe (`/unsubscribe`).

Every form carries a CSRF token; every link a signed token (jpixd.web.links). A sign-up
or a link request answers the same (a 303 to the same page) whether or not the address
is known, and does the same store work either way: the pages must not tell a stranger
who subscribes. `POST /unsubscribe` is RFC 8058's one-click: the token in the URL is the
whole authority, no cookie, no confirmation, as a mail client sends it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from multidict import MultiDictProxy

from jpixd.mail.render import check_unsubscribe_token
from jpixd.model import Subscriber, SubscriberStatus
from jpixd.prefectures import NAME_BY_CODE, REGIONS
from jpixd.runtime import Runtime
from jpixd.subscribers import Invalid, normalise_email
from jpixd.web import channelforms
from jpixd.web.context import PUBLIC, PublicContext
from jpixd.web.guard import CSRF_FIELD, Handler, read_form
from jpixd.web.keys import RUNTIME
from jpixd.web.links import Purpose, webcal
from jpixd.web.pages import form_values, page, posted_settings, settings_changes

log = structlog.get_logger("jpixd.web")


def _ctx(request: web.Request) -> tuple[Runtime, PublicContext]:
    return request.app[RUNTIME], request.app[PUBLIC]


def _page(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    """A page with a CSRF token for its forms (and the cookie it is made from)."""
    rt, ctx = _ctx(request)
    cookies: dict[str, str] = {}
    csrf = ctx.csrf.token(request, cookies)
    response = page(rt.config.tz, name, status, csrf=csrf, regions=REGIONS,
                    names=NAME_BY_CODE, errors=context.pop("errors", {}), **context)
    ctx.csrf.set_cookies(request, response, cookies)
    return response


def _message(request: web.Request, heading: str, *lines: str, status: int = 200,
             link: tuple[str, str] | None = None) -> web.Response:
    return _page(request, "message.html", status, heading=heading, lines=lines, link=link)


def _refused(request: web.Request, reason: str) -> web.Response:
    request.app[RUNTIME].metrics.web_refusals.labels(reason).inc()
    if reason == "rate_limited":
        return _message(request, "しばらくしてからお試しください",
                        "短い時間に多くのお申し込みがありました。時間をおいてもう一度お試しください。",
                        status=429)
    if reason == "csrf":
        return _message(request, "もう一度お試しください",
                        "フォームの有効期限が切れたか、別のサイトから送信されました。"
                        "ページを開き直してから送信してください。", status=403,
                        link=(request.path, "ページを開き直す"))
    if request.path.startswith("/s/confirm"):
        # A confirmation link that expired is answered by signing up again (reader
        # review: this page offered only a manage link, to someone not yet subscribed).
        return _message(request, "確認用のリンクが無効です",
                        "登録の確認用リンクの有効期限が切れたか、正しくありません。",
                        "お手数ですが、もう一度お申し込みください。新しい確認メールをお送りします。",
                        status=400, link=("/s/", "もう一度申し込む"))
    return _message(request, "リンクが無効です",
                    "リンクの有効期限が切れたか、正しくありません。",
                    "登録内容の変更用リンクは、いつでも改めてお受け取りいただけます。",
                    status=400, link=("/s/link", "変更用のリンクを受け取る"))


def _not_in_rehearsal(handler: Handler) -> Handler:
    """During the shadow weeks jpixd mails nothing: a sign-up would get no confirmation
    and a change would reach nobody. The pages this wraps say so plainly and point to
    the old system's; unsubscribing and the notice board work for real (README: Cut-over)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        if request.app[PUBLIC].rehearsal:
            return _rehearsal(request)
        return await handler(request)

    return wrapped


def _rehearsal(request: web.Request) -> web.Response:
    ctx = request.app[PUBLIC]
    rt = request.app[RUNTIME]
    rt.metrics.web_refusals.labels("rehearsal").inc()
    return _message(request, "現在、切り替え前の確認中です",
                    "このページは新しい配信システムへの切り替えに向けた確認用で、登録や配信条件の"
                    "変更はまだ受け付けていません。",
                    "お手数ですが、現在のページからお申し込みください。" if ctx.rehearsal_url else
                    "切り替えの完了後に、改めてお申し込みください。",
                    status=503, link=(ctx.rehearsal_url, "現在のお申し込みページへ")
                    if ctx.rehearsal_url else None)


async def _form(request: web.Request) -> MultiDictProxy[Any] | web.Response:
    """The posted form, after the per-client rate limit and the CSRF check."""
    _, ctx = _ctx(request)
    if not ctx.per_client.allow(ctx.proxies.limit_key(request)):
        return _refused(request, "rate_limited")
    form = await read_form(request)
    token = form.get(CSRF_FIELD)
    if not isinstance(token, str) or not ctx.csrf.valid(request, token):
        return _refused(request, "csrf")
    return form


# --------------------------------------------------------------------------- sign-up


async def signup_form(request: web.Request) -> web.Response:
    return _page(request, "signup.html", form=form_values())


async def signup(request: web.Request) -> web.Response:
    rt, ctx = _ctx(request)
    form = await _form(request)
    if isinstance(form, web.Response):
        return form
    shown = posted_settings(form)
    errors: dict[str, str] = {}
    try:
        changes = settings_changes(shown)
    except Invalid as exc:
        errors, changes = dict(exc.fields), {}
    try:
        email = normalise_email(shown["email"])
    except ValueError as exc:
        errors["email"] = "メールアドレスを正しく入力してください" if shown["email"] else \
            "メールアドレスを入力してください"
        log.info("sign-up refused", field="email", error=str(exc))
    if errors:
        return _page(request, "signup.html", 400, form=shown, errors=errors)
    sub, created = await rt.store.signup(Subscriber(email=email, **changes), rt.clock())
    if created or sub.status in (SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED):
        # A new address, or one that has not confirmed (or left and comes back): its owner
        # confirms by the link; nothing is mailed before that.
        await ctx.mail.request("confirm", sub)
    elif sub.status == SubscriberStatus.ACTIVE:
        await ctx.mail.request("manage", sub)  # already subscribed: how to change the settings
    log.info("sign-up", subscriber_id=sub.id, new=created, status=str(sub.status))
    raise web.HTTPSeeOther("/s/sent")


async def signup_sent(request: web.Request) -> web.Response:
    return _message(request, "確認メールをお送りしました",
                    "ご入力のメールアドレスに確認メールをお送りしました。",
                    "メールに記載のリンクから登録を完了してください。届かない場合は、"
                    "迷惑メールフォルダをご確認のうえ、時間をおいてもう一度お申し込みください。")


# --------------------------------------------------------------------------- links


async def _linked(request: web.Request, token: str | None,
                  purpose: Purpose) -> Subscriber | None:
    rt, ctx = _ctx(request)
    if not token:
        return None
    link = ctx.links.signer.verify(token, purpose, rt.clock())
    if link is None:
        return None
    return await rt.store.get_subscriber(link.subscriber_id)  # deleted: None


def _token(request: web.Request, form: MultiDictProxy[Any] | None = None) -> str | None:
    value = form.get("t") if form is not None else request.query.get("t")
    return value if isinstance(value, str) else None


async def _to_confirm(request: web.Request, token: str | None) -> Subscriber | None:
    """The subscriber a confirmation link may still confirm: the latest sign-up's link
    only (one issued before it, a stranger's earlier form or a mail from before an
    unsubscribe, confirms nothing), or an active subscriber (nothing left to do)."""
    rt, ctx = _ctx(request)
    link = ctx.links.signer.verify(token, Purpose.CONFIRM, rt.clock()) if token else None
    if link is None:
        return None
    sub = await rt.store.get_subscriber(link.subscriber_id)
    if sub is None or sub.id is None or sub.status in (SubscriberStatus.ACTIVE,
                                                       SubscriberStatus.SUPPRESSED):
        return sub
    signed_up = await rt.store.signed_up_at(sub.id)
    issued = link.expires_at - ctx.links.confirm_ttl.total_seconds()
    # Links carry whole seconds: one issued in the second of the sign-up is its own.
    if signed_up is None or issued < int(signed_up.timestamp()):
        log.info("confirmation link older than the latest sign-up", subscriber_id=sub.id)
        return None
    return sub


async def confirm_page(request: web.Request) -> web.Response:
    token = _token(request)
    sub = await _to_confirm(request, token)
    if sub is None:
        return _refused(request, "bad_link")
    if sub.status == SubscriberStatus.ACTIVE:
        return _confirmed(request, sub)
    if sub.status == SubscriberStatus.SUPPRESSED:
        return _message(request, "このアドレスには配信できません",
                        "このメールアドレスへの配信でエラーが続いたため、配信を停止しています。"
                        "担当窓口までご連絡ください。", status=409)
    # Exactly what will be subscribed, as the latest sign-up asked for it.
    return _page(request, "confirm.html", sub=sub, token=token)


async def confirm(request: web.Request) -> web.Response:
    rt, _ = _ctx(request)
    form = await _form(request)
    if isinstance(form, web.Response):
        return form
    sub = await _to_confirm(request, _token(request, form))
    if sub is None or sub.id is None:
        return _refused(request, "bad_link")
    if sub.status in (SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED):
        updated = await rt.store.update_subscriber(
            sub.id, {"status": SubscriberStatus.ACTIVE}, rt.clock(), actor="self-service")
        sub = updated or sub
        log.info("subscriber confirmed", subscriber_id=sub.id)
    if sub.status != SubscriberStatus.ACTIVE:
        return _refused(request, "bad_link")
    return _confirmed(request, sub)


def _confirmed(request: web.Request, sub: Subscriber) -> web.Response:
    rt, ctx = _ctx(request)
    assert sub.id is not None
    return _message(request, "登録が完了しました",
                    f"{sub.email} 宛てに、ご指定の条件に合う工事・故障情報をお送りします。",
                    "配信条件の変更・一時停止・停止は、お届けするメールのリンクからいつでもできます。",
                    link=(ctx.links.manage(sub.id, rt.clock()), "配信条件を確認する"))


# --------------------------------------------------------------------------- manage


async def manage_page(request: web.Request) -> web.Response:
    token = _token(request)
    sub = await _linked(request, token, Purpose.MANAGE)
    return await _manage(request, sub, token)


async def _manage(request: web.Request, sub: Subscriber | None, token: str | None, *,
                  flash: str | None = None, status: int = 200,
                  form: dict[str, Any] | None = None,
                  errors: dict[str, str] | None = None,
                  channel: channelforms.Answer | None = None) -> web.Response:
    rt, ctx = _ctx(request)
    if sub is None or sub.id is None:
        return _refused(request, "bad_link")
    if sub.status == SubscriberStatus.UNSUBSCRIBED:
        return _message(request, "配信は停止されています",
                        "このメールアドレスへの配信は停止されています。再開する場合は、"
                        "改めてご登録ください。", link=("/s/", "配信の登録"))
    if sub.status != SubscriberStatus.ACTIVE:
        return _refused(request, "bad_link")
    channel = channel or channelforms.Answer()
    return _page(request, "manage.html", status, sub=sub, token=token,
                 flash=flash or channel.flash, form=form or form_values(sub),
                 errors=errors or {}, channels=await rt.store.channels_of(sub.id),
                 channel_errors=channel.errors, channel_typed=channel.form,
                 calendar_url=ctx.links.calendar(sub.id),
                 webcal_url=webcal(ctx.links.calendar(sub.id)))


async def manage(request: web.Request) -> web.Response:
    rt, _ = _ctx(request)
    form = await _form(request)
    if isinstance(form, web.Response):
        return form
    token = _token(request, form)
    sub = await _linked(request, token, Purpose.MANAGE)
    if sub is None or sub.id is None or sub.status != SubscriberStatus.ACTIVE:
        return await _manage(request, sub, token)
    action, now = form.get("action"), rt.clock()
    if channelforms.is_channel_action(action):
        answer = await channelforms.act(rt, sub.id, form, actor="self-service")
        return await _manage(request, sub, token, channel=answer,
                             status=400 if answer.errors else 200)
    if action == "unsubscribe":
        await rt.store.update_subscriber(sub.id, {"status": SubscriberStatus.UNSUBSCRIBED},
                                         now, actor="self-service")
        log.info("subscriber unsubscribed", subscriber_id=sub.id, by="manage page")
        return _message(request, "配信を停止しました",
                        f"{sub.email} 宛ての工事・故障情報メールの配信を停止しました。",
                        link=("/s/", "もう一度登録する"))
    if action in ("pause", "resume"):
        paused = action == "pause"
        updated = await rt.store.update_subscriber(sub.id, {"paused": paused}, now,
                                                   actor="self-service")
        log.info("subscriber paused" if paused else "subscriber resumed", subscriber_id=sub.id)
        return await _manage(request, updated, token, flash="配信を一時停止しました。" if paused
                             else "配信を再開しました。")
    shown = {**posted_settings(form), "email": sub.email}
    try:
        changes = settings_changes(shown)
    except Invalid as exc:
        return await _manage(request, sub, token, status=400, form=shown,
                             errors=dict(exc.fields))
    updated = await rt.store.update_subscriber(sub.id, changes, now, actor="self-service")
    log.info("subscriber changed settings", subscriber_id=sub.id)
    return await _manage(request, updated, token, flash="変更を保存しました。")


# --------------------------------------------------------------------------- link request


async def link_form(request: web.Request) -> web.Response:
    return _page(request, "link.html", form={"email": ""})


async def link_request(request: web.Request) -> web.Response:
    rt, ctx = _ctx(request)
    form = await _form(request)
    if isinstance(form, web.Response):
        return form
    raw = form.get("email", "")
    raw = raw if isinstance(raw, str) else ""
    try:
        email = normalise_email(raw)
    except ValueError:
        # Said for any malformed address, known or not: it tells nobody anything.
        return _page(request, "link.html", 400, form={"email": raw},
                     errors={"email": "メールアドレスを正しく入力してください"})
    sub = await rt.store.subscriber_by_email(email)
    if sub is not None and sub.status == SubscriberStatus.ACTIVE:
        await ctx.mail.request("manage", sub)
    elif sub is not None and sub.status == SubscriberStatus.PENDING:
        await ctx.mail.request("confirm", sub)
    raise web.HTTPSeeOther("/s/link-sent")


async def link_sent(request: web.Request) -> web.Response:
    return _message(request, "メールをお送りしました",
                    "ご登録のあるメールアドレスでしたら、配信条件を変更するためのリンクを"
                    "お送りしました。",
                    "届かない場合は、迷惑メールフォルダをご確認のうえ、ご登録のアドレスを"
                    "お確かめください。")


# --------------------------------------------------------------------------- unsubscribe


async def _unsubscribing(request: web.Request) -> Subscriber | None:
    """The subscriber a new-style (`t`) or an older (`token`) link is for."""
    rt, ctx = _ctx(request)
    token = request.query.get("t")
    if token is not None:
        return await _linked(request, token, Purpose.UNSUBSCRIBE)
    legacy = request.query.get("token", "")
    sid = check_unsubscribe_token(ctx.legacy_unsubscribe_key, legacy) if legacy else None
    return await rt.store.get_subscriber(sid) if sid is not None else None


async def _legacy_subscriber(request: web.Request) -> Subscriber | None:
    """The subscriber an old system's unsubscribe link names ([web] legacy_unsubscribe_*),
    in mails it sent before the switch: by address, or by its id mapped at import."""
    rt, ctx = _ctx(request)
    value = request.query.get(ctx.legacy_param, "")
    if not value or len(value) > 320:
        return None
    if ctx.legacy_by == "legacy_id":
        return await rt.store.subscriber_by_legacy_id(value)
    try:
        return await rt.store.subscriber_by_email(normalise_email(value))
    except ValueError:
        return None


Finder = Callable[[web.Request], Awaitable[Subscriber | None]]


def _unsubscribe(find: Finder, actor: str) -> tuple[Handler, Handler]:
    """The human page (one button; a link scanner's GET changes nothing) and RFC 8058's
    one-click POST, for one kind of link: ours, or the old system's."""

    async def page(request: web.Request) -> web.Response:
        sub = await find(request)
        if sub is None:
            return _refused(request, "bad_link")
        if sub.status == SubscriberStatus.UNSUBSCRIBED:
            return _message(request, "配信は停止されています",
                            f"{sub.email} 宛ての配信はすでに停止されています。")
        # The button posts to this very URL (whichever kind of token it carries).
        return _page(request, "unsubscribe.html", sub=sub, action=str(request.rel_url))

    async def one_click(request: web.Request) -> web.Response:
        rt, _ = _ctx(request)
        form = await read_form(request)
        if form.get("List-Unsubscribe") != "One-Click":
            return _message(request, "配信の停止",
                            "このリクエストは RFC 8058 の形式ではありません。", status=400)
        sub = await find(request)
        if sub is None or sub.id is None:
            return _refused(request, "bad_link")
        if sub.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
            await rt.store.update_subscriber(sub.id, {"status": SubscriberStatus.UNSUBSCRIBED},
                                             rt.clock(), actor=actor)
            log.info("subscriber unsubscribed", subscriber_id=sub.id, by=actor)
        return _message(request, "配信を停止しました",
                        f"{sub.email} 宛ての工事・故障情報メールの配信を停止しました。",
                        link=("/s/", "もう一度登録する"))

    return page, one_click


unsubscribe_page, one_click = _unsubscribe(_unsubscribing, "one-click")
legacy_unsubscribe_page, legacy_one_click = _unsubscribe(_legacy_subscriber, "legacy-link")


def legacy_routes(path: str) -> list[web.RouteDef]:
    return [web.get(path, legacy_unsubscribe_page), web.post(path, legacy_one_click)]


def routes() -> list[web.RouteDef]:
    return [
        web.get("/s/", _not_in_rehearsal(signup_form)),
        web.post("/s/", _not_in_rehearsal(signup)),
        web.get("/s/sent", signup_sent),
        web.get("/s/confirm", _not_in_rehearsal(confirm_page)),
        web.post("/s/confirm", _not_in_rehearsal(confirm)),
        web.get("/s/manage", _not_in_rehearsal(manage_page)),
        web.post("/s/manage", _not_in_rehearsal(manage)),
        web.get("/s/link", _not_in_rehearsal(link_form)),
        web.post("/s/link", _not_in_rehearsal(link_request)),
        web.get("/s/link-sent", link_sent),
        web.get("/unsubscribe", unsubscribe_page), web.post("/unsubscribe", one_click),
        web.get("/s", _to_signup),
    ]


async def _to_signup(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently("/s/")

