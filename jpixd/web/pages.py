"""Server-rendered HTML: one Jinja2 environment with autoescaping on for every page, and
the static files (one stylesheet, one small script) that the CSP allows."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from datetime import datetime, tzinfo
from importlib import resources
from typing import Any, cast

import jinja2
import structlog
from aiohttp import web
from markupsafe import Markup, escape
from multidict import MultiDictProxy

from jpixd import phrases, services
from jpixd.channels.urls import shown
from jpixd.logs import REDACTOR
from jpixd.mail.render import (
    CARRIER_LABELS,
    KIND_LABELS,
    STATUS_LABELS,
    local_end,
    local_time,
    short_span,
    stated_time,
)
from jpixd.model import NoticeStatus, Subscriber
from jpixd.prefectures import NAME_BY_CODE
from jpixd.subscribers import Invalid, validate_changes
from jpixd.web.words import (
    ACTION_LABELS,
    ACTOR_LABELS,
    CHANGE_LABELS,
    CHANNEL_KIND_LABELS,
    CHANNEL_MESSAGE_LABELS,
    CHANNEL_PAUSE_LABELS,
    CHANNEL_STATE_LABELS,
    DELIVERY_PURPOSE_LABELS,
    DELIVERY_STATE_LABELS,
    FORM_ERRORS,
    LOOP_LABELS,
    POLL_RESULT_LABELS,
    SUB_STATUS_LABELS,
    TICKET_LABELS,
    WINDOW_LABELS,
    change_in_words,
    channel_error_in_words,
    degraded_in_words,
    pause_reason_in_words,
)

log = structlog.get_logger("jpixd.web")

@functools.lru_cache(maxsize=4)
def environment(tz: tzinfo) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("jpixd", "templates/web"),
        # Every value a page shows came from a feed, a form or an operator: all escaped.
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)
    env.filters["local"] = functools.partial(local_time, tz=tz)
    env.filters["local_end"] = functools.partial(local_end, tz=tz)  # | local_end(start)
    env.filters["stated"] = functools.partial(stated_time, tz=tz)
    # 「12/6(日) 16:20」: a table's time on a phone, where the year took a line of its own.
    env.filters["short"] = lambda t: short_span(t, None, tz) if isinstance(t, datetime) else ""
    env.filters["pref"] = lambda code: NAME_BY_CODE.get(code, code)
    env.filters["iso"] = lambda dt: dt.isoformat() if isinstance(dt, datetime) else ""
    # Feed errors quote the URL, with any password in it (a feed behind basic auth):
    # shown as the logs and the admin API show it.
    env.filters["redact"] = lambda text: REDACTOR.text(text) if isinstance(text, str) else text
    env.filters["in_words"] = change_in_words
    env.filters["phrases"] = phrased
    env.filters["pause_reason"] = pause_reason_in_words
    env.filters["degraded"] = degraded_in_words
    env.filters["shown_url"] = shown
    env.filters["channel_error"] = channel_error_in_words
    env.globals.update(
        KIND_LABELS=KIND_LABELS, CARRIER_LABELS=CARRIER_LABELS, WINDOW_LABELS=WINDOW_LABELS,
        SUB_STATUS_LABELS=SUB_STATUS_LABELS, DELIVERY_STATE_LABELS=DELIVERY_STATE_LABELS,
        DELIVERY_PURPOSE_LABELS=DELIVERY_PURPOSE_LABELS,
        POLL_RESULT_LABELS=POLL_RESULT_LABELS, TICKET_LABELS=TICKET_LABELS,
        ACTOR_LABELS=ACTOR_LABELS, ACTION_LABELS=ACTION_LABELS, CHANGE_LABELS=CHANGE_LABELS,
        LOOP_LABELS=LOOP_LABELS, CHANNEL_KIND_LABELS=CHANNEL_KIND_LABELS,
        CHANNEL_STATE_LABELS=CHANNEL_STATE_LABELS, CHANNEL_PAUSE_LABELS=CHANNEL_PAUSE_LABELS,
        CHANNEL_MESSAGE_LABELS=CHANNEL_MESSAGE_LABELS,
        STATUS_LABELS={str(k): v for k, v in STATUS_LABELS.items()},
        SERVICE_CHOICES=services.CHOICES,
        FAILURE_OPEN=[str(NoticeStatus.OCCURRED), str(NoticeStatus.PARTIALLY_RECOVERED)])
    return env


# Titles only: a notice's text is prose, which may break between characters as Japanese
# prose does (and 20,000 characters cut into phrases on every view would cost the event
# loop 40 ms a request through an outage's refresh storm).
PHRASED_MAX = 500


@functools.lru_cache(maxsize=4096)
def phrased(text: str) -> Markup:
    """A title whose lines break between its phrases in every browser: each phrase
    escaped, a <wbr> between them, for an element styled `word-break: keep-all` (class
    "jp"). Chromium alone has `word-break: auto-phrase`; Safari on an iPhone broke
    「回/復」. A text longer than PHRASED_MAX is only escaped."""
    if len(text) > PHRASED_MAX:
        return escape(text)
    return Markup("<wbr>".join(str(escape(p)) for p in phrases.split(text)))


def japanese_errors(tz: tzinfo, *, home: tuple[str, str], template: str = "message.html",
                    skip: str | None = None, **context: Any) -> Any:
    """Pages a visitor reads in Japanese: a missing page, a wrong method and a server
    error (aiohttp's own were a bare English 「404: Not Found」, with no title or
    language); what a handler answered itself (a form's 400, a feed's 304) is left as it
    is, and so is every path under `skip` (the admin API answers in its JSON)."""

    def show(status: int, heading: str, line: str) -> web.Response:
        return page(tz, template, status, heading=heading, lines=[line], link=home, **context)

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        if skip is not None and request.path.startswith(skip):
            return cast(web.StreamResponse, await handler(request))
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPNotFound:
            return show(404, "ページが見つかりません",
                        "お探しのページは見つかりませんでした。アドレスをご確認ください。")
        except web.HTTPMethodNotAllowed:
            return show(405, "この操作はできません", "このページはこの方法では開けません。")
        except web.HTTPException:
            raise
        except Exception:
            log.exception("page failed", path=request.path)
            return show(500, "ただいま表示できません",
                        "一時的な障害です。しばらくしてからもう一度お試しください。")
    return middleware


def page(tz: tzinfo, name: str, status: int = 200, **context: Any) -> web.Response:
    html = environment(tz).get_template(name).render(**context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def cacheable(request: web.Request, response: web.Response,
              shared_age: int = 15) -> web.Response:
    """A page that is the same for every visitor (the board, a notice): a shared cache (a
    CDN in front of the ALB) may serve it for a few seconds through an outage's refresh
    storm, and a browser that has it gets a 304; a browser always asks again, so a
    visitor never reads a board older than the click (reader review: it was no-store)."""
    body = response.body if isinstance(response.body, bytes) else b""
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    headers = {"ETag": etag, "Cache-Control": f"public, max-age=0, s-maxage={shared_age}"}
    given = request.headers.get("If-None-Match", "")
    if etag in [t.strip().removeprefix("W/") for t in given.split(",")]:
        return web.Response(status=304, headers=headers)
    response.headers.update(headers)
    return response


def form_values(sub: Subscriber | None = None) -> dict[str, Any]:
    """A subscriber's settings as the forms show them (self-service and console), or a
    new form's defaults."""
    s = sub or Subscriber(email="")
    ticked, rest = services.shown(s.services)
    return {"email": s.email, "name": s.name, "organization": s.organization,
            "carriers": list(s.carriers), "prefectures": list(s.prefectures),
            "kinds": list(s.kinds), "service_choices": ticked, "services": "; ".join(rest),
            "windows": list(s.windows), "charset": s.charset or ""}


def posted_settings(form: MultiDictProxy[Any]) -> dict[str, Any]:
    """What was typed, to show again beside its errors."""
    def strings(name: str) -> list[str]:
        return [v for v in form.getall(name, []) if isinstance(v, str)]

    def one(name: str) -> str:
        value = form.get(name, "")
        return value if isinstance(value, str) else ""

    return {"email": one("email"), "name": one("name"), "organization": one("organization"),
            "carriers": strings("carriers"), "prefectures": strings("prefectures"),
            "kinds": strings("kinds"), "service_choices": strings("service_choices"),
            "services": one("services"),
            "windows": strings("windows"), "charset": one("charset")}


def settings_changes(shown: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Validated settings (jpixd.subscribers' rules, the API's), with `extra` fields the
    form has besides (the console's status and flags); raises Invalid, each field's
    message in Japanese. Services may be separated by ";", "；", "、", "," or line breaks."""
    try:
        return _validated(shown, **extra)
    except Invalid as exc:
        raise Invalid({k: FORM_ERRORS.get(k, "入力内容が正しくありません")
                       for k in exc.fields}) from None


def _validated(shown: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return validate_changes({
        "name": shown["name"], "organization": shown["organization"],
        "carriers": shown["carriers"], "prefectures": shown["prefectures"],
        "kinds": shown["kinds"],
        "services": services.stored(shown["service_choices"],
                                    re.split(r"[;；、,\n]", shown["services"])),
        "windows": shown["windows"], "charset": shown["charset"] or None, **extra,
    }, creating=False)


_STATIC = {"jpixd.css": "text/css", "jpixd.js": "text/javascript"}


@functools.lru_cache(maxsize=4)
def _static_body(name: str) -> bytes:
    return resources.files("jpixd").joinpath("static", name).read_bytes()


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _STATIC:
        raise web.HTTPNotFound()
    return web.Response(body=_static_body(name), content_type=_STATIC[name], charset="utf-8",
                        headers={"Cache-Control": "public, max-age=3600"})


def static_routes() -> list[web.RouteDef]:
    return [web.get("/static/{name}", static)]
