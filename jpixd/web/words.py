"""The operator's and the subscriber's Japanese for what the system says in English:
state words, who did what, and translations of the rules' and loops' messages (the API,
the CLI and the logs keep the English). Pure."""

from __future__ import annotations

import re
from typing import Any

from jpixd.mail.render import CARRIER_LABELS, KIND_LABELS
from jpixd.prefectures import NAME_BY_CODE
from jpixd.records import ImportDiff, listed

WINDOW_LABELS = {"day": "昼間（8時〜19時）", "night": "夜間（19時〜23時）",
                 "late_night": "深夜・早朝（23時〜8時）"}
SUB_STATUS_LABELS = {"pending": "確認待ち", "active": "配信中", "suppressed": "配信停止（エラー）",
                     "unsubscribed": "配信停止"}
# The console's other state words in Japanese (reader review: pending, not_modified, …).
DELIVERY_STATE_LABELS = {"pending": "送信待ち", "sending": "送信中", "sent": "送信済み",
                         "retry": "再送待ち", "failed": "失敗", "suppressed": "宛先停止",
                         "skipped": "送信せず", "shadow": "保管（試行運用）"}
# What a delivery is: a notice's mail, its reminder, or self-service mail (issue 24).
DELIVERY_PURPOSE_LABELS = {"notice": "通知", "reminder": "事前通知", "confirm": "登録確認",
                           "manage": "変更リンク"}
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
                 "deleted": "削除", "suppressed": "配信停止（エラー）", "active": "配信再開",
                 "channel added": "通知先の追加", "channel changed": "通知先の変更",
                 "channel removed": "通知先の削除"}
# Channels beyond mail (issue 26): what each is, and its state.
CHANNEL_KIND_LABELS = {"webhook": "Webhook（JSON）", "slack": "Slack",
                       "teams": "Microsoft Teams"}
CHANNEL_STATE_LABELS = {"verifying": "未確認（テスト送信への 2xx の応答待ち）", "active": "配信中",
                        "paused": "一時停止", "removed": "削除済み"}
CHANNEL_PAUSE_LABELS = {"gone": "URLが見つからない応答（404/410）が続いたため自動で停止",
                        "operator": "管理者が停止", "subscriber": "ご本人が停止"}
CHANNEL_MESSAGE_LABELS = {"queued": "送信待ち", "sent": "送信済み", "failed": "失敗",
                          "skipped": "送信せず"}
_FIELD_WORDS = {"email": "メールアドレス", "name": "お名前", "organization": "会社・団体名",
                "carriers": "通信事業者", "prefectures": "対象地域", "kinds": "種類",
                "services": "サービス", "windows": "時間帯", "status": "状態",
                "failure_respects_windows": "故障も時間帯に従う", "charset": "文字コード",
                "paused": "一時停止", "legacy_id": "旧システムのID"}


# A field's codes by their names, where the console names them.
_VALUE_NAMES: dict[str, dict[str, str]] = {
    "prefectures": NAME_BY_CODE, "carriers": CARRIER_LABELS, "kinds": KIND_LABELS,
    "windows": {k: v.split("（")[0] for k, v in WINDOW_LABELS.items()},
    "status": SUB_STATUS_LABELS}


def _value_in_words(field: str, text: str) -> str:
    if text == "(all)":
        return "すべて"
    if field in _VALUE_NAMES:
        return "、".join(_VALUE_NAMES[field].get(x, x) for x in text.split(","))
    return text


def field_change_in_words(field: str, before: str, after: str) -> str:
    """One field's change, its values as the log writes them (`records.listed` for a
    list): 「対象地域: 東京都 → 北海道、東京都」; a field the console does not name is
    shown as it is."""
    if field not in _FIELD_WORDS:
        return f"{field}: {before} → {after}"
    return (f"{_FIELD_WORDS[field]}: {_value_in_words(field, before)} → "
            f"{_value_in_words(field, after)}")


def change_in_words(detail: str) -> str:
    """A subscriber change as the console shows it (reader review: 「prefectures: 13,27 →
    01,13,27」): 「対象地域: 東京都、大阪府 → 北海道、東京都、大阪府」. The log keeps its codes
    (the API shows them); a part that is not `field: old → new` is shown as it is."""
    out = []
    for part in detail.split("; "):
        field, sep, rest = part.partition(": ")
        before, arrow, after = rest.partition(" → ")
        if not sep or field not in _FIELD_WORDS:
            out.append(part)
        elif arrow:
            out.append(field_change_in_words(field, before, after))
        else:
            out.append(f"{_FIELD_WORDS[field]}: {_value_in_words(field, rest)}")
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
    "channels": ("通知先は「種類=URL」を「;」で区切って書いてください（種類は webhook・slack・"
                 "teams、URL は https://、1人5件まで）"),
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
               "backlog": "Backlog への起票", "housekeeping": "定期処理", "archive": "アーカイブ",
               "channels": "Webhook・Slack・Teams への送信"}
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


def import_diff_in_words(diff: ImportDiff) -> str:
    """A subscriber import's difference as the change log says it: 「a@example.jp: 対象地域:
    東京都 → 北海道、東京都」, 「a@example.jp: 新規登録」, 「a@example.jp: 通知先を追加 slack
    https://hooks.slack.com/…abcd」."""
    if diff.what == "new":
        return f"{diff.email}: 新規登録"
    if diff.kind:
        words = "通知先を追加" if diff.what == "channel added" else "通知先を削除"
        key = f"（署名の鍵 {diff.signing_key}）" if diff.signing_key else ""
        return f"{diff.email}: {words} {diff.kind} {diff.url}{key}"

    def plain(value: Any) -> str:
        if isinstance(value, tuple | list):
            return listed(value)
        if isinstance(value, bool):
            return "はい" if value else "いいえ"
        return "（なし）" if value in (None, "") else str(value)

    return f"{diff.email}: " + field_change_in_words(diff.what, plain(diff.before),
                                                      plain(diff.after))


# A channel's problems on the console and the manage page, by the code the rules give
# (jpixd.channels.urls.UnsafeUrl, jpixd.channels.manage.ChannelInvalid); the API and the
# CLI keep the English.
CHANNEL_PROBLEMS = {
    "kind": "通知先の種類を選んでください",
    "required": "URL を入力してください",
    "scheme": "https:// で始まる URL を入力してください",
    "scheme_http": "http:// か https:// で始まる URL を入力してください",
    "host": "URL にホスト名がありません",
    "userinfo": "ユーザー名やパスワードを含まない URL にしてください",
    "length": "URL は2,000文字までにしてください",
    "control": "URL に空白や制御文字を含めないでください",
    "unreadable": "URL を読み取れません",
    "port": "URL のポート番号が正しくありません",
    "too_many": "通知先は1人5件までです",
    "entry": "通知先は「種類=URL」の形で書いてください",
    "unknown_shown": ("省略した URL（…）に当たる通知先がありません。"
                      "新しい通知先は URL を全部書いてください"),
}


def channel_problem_in_words(code: str) -> str:
    return CHANNEL_PROBLEMS.get(code, "通知先の指定が正しくありません")


# What came of a channel's last attempt (jpixd.channels.post, .sender, the store), as the
# console and the manage page say it; the API and the logs keep the English.
_CHANNEL_ERRORS = (
    (re.compile(r"gave up after (\d+) attempts: (.*)\Z", re.S),
     "{0} 回試しましたが送れませんでした（{1}）"),
    (re.compile(r"HTTP (\d+): the URL is gone\Z"), "URL が見つかりません（HTTP {0}）"),
    (re.compile(r"HTTP (\d+): the webhook is not there\Z"), "URL が見つかりません（HTTP {0}）"),
    (re.compile(r"HTTP (\d+): redirects are not followed\Z"),
     "転送（HTTP {0}）には従いません。転送先の URL を登録してください"),
    (re.compile(r"HTTP (\d+)\Z"), "HTTP {0} の応答がありました"),
    (re.compile(r".*may not use.*\Z", re.S),
     "送れない宛先です（社内・予約済みなど公開されていないアドレス）"),
    (re.compile(r"cannot connect: .*\Z", re.S),
     "接続できません（ホスト名か、相手のサーバーをご確認ください）"),
    (re.compile(r"no answer within (\d+) s\Z"), "{0} 秒以内に応答がありません"),
    (re.compile(r"the URL is not allowed: .*\Z", re.S), "この URL には送れません"),
    (re.compile(r"no answer\Z"), "応答がありません"),
    (re.compile(r"gone\Z"), "URL が見つからないため停止"),
    (re.compile(r"superseded\Z"), "新しい報に置き換え"),
    (re.compile(r"channel paused\Z"), "通知先を一時停止中"),
    (re.compile(r"channel removed\Z"), "通知先を削除済み"),
    (re.compile(r"url changed\Z"), "URL を変更したため"),
)


def channel_error_in_words(error: str | None) -> str:
    """A channel's last error in Japanese; one nobody mapped is shown as it is."""
    if not error:
        return ""
    for pattern, words in _CHANNEL_ERRORS:
        m = pattern.match(error)
        if m:
            return words.format(*(channel_error_in_words(g) if i == 1 and "{1}" in words
                                  else g for i, g in enumerate(m.groups())))
    return error


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
