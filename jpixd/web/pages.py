"""Server-rendered HTML: one Jinja2 environment with autoescaping on for every page, and
the static files (one stylesheet, one small script) that the CSP allows."""

from __future__ import annotations

import ast
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

log = structlog.get_logger("jpixd.web")

WINDOW_LABELS = {"day": "昼間（8時〜19時）", "night": "夜間（19時〜23時）",
                 "late_night": "深夜・早朝（23時〜8時）"}
SUB_STATUS_LABELS = {"pending": "確認待ち", "active": "配信中", "suppressed": "配信停止（エラー）",
                     "unsubscribed": "配信停止"}
# The console's other state words in Japanese (reader review: pending, not_modified, …).
DELIVERY_STATE_LABELS = {"pending": "送信待ち", "sending": "送信中", "sent": "送信済み",
                         "retry": "再送待ち", "failed": "失敗", "suppressed": "宛先停止",
                         "skipped": "送信せず", "shadow": "保管（試行運用）"}
POLL_RESULT_LABELS = {"ok": "取得", "not_modified": "変更なし", "error": "取得失敗",
                      "parse_error": "解析失敗", "layout_changed": "ページの形式が変わった"}
TICKET_LABELS = {"bounce": "不達", "guard": "送信停止", "intent": "起票待ち", "open": "対応中",
                 "closing": "完了処理中", "closed": "完了", "gone": "削除済み"}
ACTOR_LABELS = {"admin": "管理API", "console": "管理画面", "guard": "不達率の監視", "ses": "SES",
                "smtp": "SMTP", "file": "ファイル", "self-service": "本人", "one-click":
                "本人（ワンクリック）", "sync": "旧システムとの同期", "import": "取り込み",
                "bounces": "不達・苦情", "sample": "サンプル"}
# What a notice revision meant (jpixd.model.Change), in the words of the mail's subject.
CHANGE_LABELS = {"new": "新規", "update": "更新", "cancel": "中止", "complete": "完了",
                 "recover": "回復", "reminder": "事前通知", "withdraw": "掲載終了",
                 "restore": "再掲載", "silent": "記録のみ（内容に変化なし）",
                 "baseline": "初回取得（送信しない）"}
ACTION_LABELS = {"created": "登録", "updated": "変更", "confirmed": "確認完了",
                 "unsubscribed": "配信停止", "paused": "一時停止", "resumed": "再開",
                 "deleted": "削除", "suppressed": "配信停止（エラー）", "active": "配信再開"}
_FIELD_WORDS = {"email": "メールアドレス", "name": "お名前", "organization": "会社・団体名",
                "carriers": "通信事業者", "prefectures": "対象地域", "kinds": "種類",
                "services": "サービス", "windows": "時間帯", "status": "状態",
                "failure_respects_windows": "故障も時間帯に従う", "charset": "文字コード",
                "paused": "一時停止", "legacy_id": "旧システムのID"}


def change_in_words(detail: str) -> str:
    """A subscriber change as the console shows it (reader review: 「prefectures: 13,27 →
    01,13,27」): 「対象地域: 東京都、大阪府 → 北海道、東京都、大阪府」. The log keeps its codes
    (the API shows them); a part that is not `field: old → new` is shown as it is."""
    names: dict[str, dict[str, str]] = {
        "prefectures": NAME_BY_CODE, "carriers": CARRIER_LABELS, "kinds": KIND_LABELS,
        "windows": {k: v.split("（")[0] for k, v in WINDOW_LABELS.items()},
        "status": SUB_STATUS_LABELS}

    def value(field: str, text: str) -> str:
        if text == "(all)":
            return "すべて"
        if field in names:
            return "、".join(names[field].get(x, x) for x in text.split(","))
        return text

    out = []
    for part in detail.split("; "):
        field, sep, rest = part.partition(": ")
        before, arrow, after = rest.partition(" → ")
        if not sep or field not in _FIELD_WORDS:
            out.append(part)
        elif arrow:
            out.append(f"{_FIELD_WORDS[field]}: {value(field, before)} → {value(field, after)}")
        else:
            out.append(f"{_FIELD_WORDS[field]}: {value(field, rest)}")
    return "; ".join(out)


# A CSV row's problem with a column, in the console's words (the CLI and the API keep the
# rules' English: "line 3, column email: 'x' is not an email address").
_CSV_COLUMN_ERRORS = {
    "email": "メールアドレスの形式が正しくありません",
    "legacy_id": "旧システムのIDが正しくありません（改行や制御文字は使えません）",
    "carriers": "east・west のどちらか、または両方を「;」で区切って書いてください",
    "kinds": "construction・failure のどちらか、または両方を「;」で区切って書いてください",
    "windows": "day・night・late_night を1つ以上、「;」で区切って書いてください",
    "prefectures": "都道府県の名前か番号（01〜47）を「;」で区切って書いてください",
    "status": "active・pending・suppressed・unsubscribed のどれかを書いてください",
}
_CSV_LINE = re.compile(r"line (\d+), column '?([^':]+?)'?: (.*)\Z", re.S)
_CSV_WIDTH = re.compile(r"line (\d+): (\d+) columns, the header has (\d+)\Z")


def csv_problem_in_words(problem: str) -> str:
    """A problem `jpixd.subscribers.parse_csv` found, as the console shows it: which line
    and column, and what to do, in Japanese."""
    m = _CSV_LINE.match(problem)
    if m:
        line, column, message = m.groups()
        where = f"{line} 行目の「{column}」列"
        if message.startswith("unknown column"):
            return f"{where}: 使えない列名です（使える列: {', '.join(_FIELD_WORDS)}）"
        if message == "appears twice":
            return f"{where}: 同じ列が2つあります"
        repeated = re.search(r"repeats line (\d+)\Z", message)
        if repeated:
            return f"{where}: {repeated.group(1)} 行目と同じメールアドレスです"
        return f"{where}: " + (_CSV_COLUMN_ERRORS.get(column) or FORM_ERRORS.get(column)
                               or "値が正しくありません")
    m = _CSV_WIDTH.match(problem)
    if m:
        return f"{m.group(1)} 行目: 列が {m.group(2)} 個あります（見出し行は {m.group(3)} 個）"
    if problem.startswith("line 1: no 'email' column"):
        return "1 行目: 見出しに email 列がありません"
    if problem.startswith("line 1: the file is empty"):
        return "ファイルが空です（email 列のある見出し行が必要です）"
    if problem.startswith("file:"):
        return ("ファイルの文字コードを読めません"
                "（UTF-8・Shift_JIS・EUC-JP のいずれかで保存してください）")
    m = re.match(r"line (\d+): ", problem)
    if m:
        return f"{m.group(1)} 行目: CSV として読めません（{problem[m.end():]}）"
    return problem


# The loops by what they do (their names stay the identifiers the logs and metrics use).
LOOP_LABELS = {"sender": "送信", "feeds": "お知らせの取得", "bounces": "不達・苦情の受信",
               "backlog": "Backlog への起票", "housekeeping": "定期処理", "archive": "アーカイブ"}
_DEGRADED = (
    (re.compile(r"SQS receive failing \((\d+) in a row\)\Z"),
     "SQS からの受信に失敗（{0} 回連続）"),
    (re.compile(r"Backlog down\Z"), "Backlog に接続できません"),
    (re.compile(r"Backlog misconfigured\Z"),
     "Backlog の設定が正しくありません（API キー・プロジェクト）"),
    (re.compile(r"archive sink (\S+) unavailable: (.*)\Z", re.S),
     "アーカイブ先 {0} に送れません（{1}）"),
)


def degraded_in_words(text: str) -> str:
    """A loop's "working, but not well" (English in the health API and logs), as the
    console says it."""
    for pattern, words in _DEGRADED:
        m = pattern.match(text)
        if m:
            return words.format(*m.groups())
    return text


_GUARD_PAUSE = re.compile(
    r"paused by the guard: bounce rate (\S+) \((\d+)/(\d+)\), complaint rate (\S+) "
    r"\((\d+)/\d+\); limits (\S+) / (\S+)\Z")


def pause_reason_in_words(reason: str | None) -> str:
    """Why sending is paused, as the console says it: the guard's own reason (kept in
    English for the logs, the API and Backlog) in Japanese, an operator's as typed."""
    if not reason:
        return ""
    m = _GUARD_PAUSE.match(reason)
    if m is None:
        return reason
    bounce, bounces, sent, complaint, complaints, bounce_limit, complaint_limit = m.groups()
    return (f"不達率 {bounce}（{sent} 通中 {bounces} 通）・苦情率 {complaint}（{complaints} 通）が"
            f"停止の基準（不達率 {bounce_limit}・苦情率 {complaint_limit}）に達したため、"
            "自動で停止しました")


def import_diff_in_words(diff: str) -> str:
    """A dry run's difference ("a@example.jp: prefectures ('13',) → ('01', '13')" or
    "a@example.jp: new"), as the change log says it."""
    email, _, rest = diff.partition(": ")
    if rest == "new":
        return f"{email}: 新規登録"
    field, _, change = rest.partition(" ")
    before, arrow, after = change.partition(" → ")
    if not arrow:
        return diff

    def plain(text: str) -> str:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(value, tuple | list):
            return ",".join(str(v) for v in value) or "(all)"
        if isinstance(value, bool):
            return "はい" if value else "いいえ"
        return "（なし）" if value in (None, "") else str(value)

    return f"{email}: " + change_in_words(f"{field}: {plain(before)} → {plain(after)}")


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
    env.globals.update(
        KIND_LABELS=KIND_LABELS, CARRIER_LABELS=CARRIER_LABELS, WINDOW_LABELS=WINDOW_LABELS,
        SUB_STATUS_LABELS=SUB_STATUS_LABELS, DELIVERY_STATE_LABELS=DELIVERY_STATE_LABELS,
        POLL_RESULT_LABELS=POLL_RESULT_LABELS, TICKET_LABELS=TICKET_LABELS,
        ACTOR_LABELS=ACTOR_LABELS, ACTION_LABELS=ACTION_LABELS, CHANGE_LABELS=CHANGE_LABELS,
        LOOP_LABELS=LOOP_LABELS,
        STATUS_LABELS={str(k): v for k, v in STATUS_LABELS.items()},
        SERVICE_CHOICES=services.CHOICES,
        FAILURE_OPEN=[str(NoticeStatus.OCCURRED), str(NoticeStatus.PARTIALLY_RECOVERED)])
    return env


@functools.lru_cache(maxsize=8192)
def phrased(text: str) -> Markup:
    """Text whose lines break between its phrases in every browser: each phrase escaped,
    a <wbr> between them, for an element styled `word-break: keep-all` (class "jp").
    Chromium alone has `word-break: auto-phrase`; Safari on an iPhone broke 「回/復」."""
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


# A form's errors as its reader reads them (the API keeps the rules' own English): the
# field's Japanese name and what to do (reader review: 「must name at least one of east,
# west」 on the sign-up page).
FORM_ERRORS = {
    "name": "お名前は200文字までで入力してください",
    "organization": "会社・団体名は200文字までで入力してください",
    "carriers": "通信事業者を1つ以上選んでください",
    "prefectures": "対象地域の指定が正しくありません",
    "kinds": "お知らせの種類を1つ以上選んでください",
    "services": "サービス名は1つ100文字までで入力してください",
    "windows": "配信する時間帯を1つ以上選んでください",
    "charset": "文字コードの指定が正しくありません",
    "status": "状態の指定が正しくありません",
    "paused": "一時停止の指定が正しくありません",
    "failure_respects_windows": "故障の配信時間帯の指定が正しくありません",
}


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
