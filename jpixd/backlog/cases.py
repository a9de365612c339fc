"""What an issue says and when its case is handled: pure functions, no I/O.

The texts are composed when the case is recorded (in the same transaction as the bounce)
so that what the reconciler sends, marker included, is fixed before any call is made.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from jpixd.model import JST, SendingState

_MANAGED = "この課題は jpixd が管理しています。対応が済めば jpixd が自動的に完了にします。"


def new_marker() -> str:
    """A token that Backlog's keyword search finds as one word (letters and digits only):
    it is how a create that may have reached Backlog is found again after a crash."""
    return "jpixd" + secrets.token_hex(8)


def marker_line(marker: str) -> str:
    return f"jpixd-marker: {marker}"


def _local(t: datetime, tz: tzinfo) -> str:
    """In the configured time zone, named ("2026-11-29 10:00:00 JST")."""
    local = t.astimezone(tz)
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or local.strftime("%z"))


def _duration(d: timedelta) -> str:
    seconds = int(d.total_seconds())
    if seconds % 86400 == 0 and seconds >= 2 * 86400:  # "24h" reads as 24 時間, "7d" as 7 日
        return f"{seconds // 86400} 日"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} 時間"
    return f"{seconds // 60} 分" if seconds % 60 == 0 else f"{seconds} 秒"


@dataclass(frozen=True)
class BounceFacts:
    """One bounce, as the issue or comment reports it."""

    email: str
    subtype: str | None  # "Permanent/General"
    diagnostic: str | None
    occurred_at: datetime
    ses_message_id: str | None
    delivery_id: int | None
    notice_id: int | None
    notice_title: str | None
    tz: tzinfo = JST  # `timezone` from the config

    def lines(self) -> list[str]:
        notice = (f"#{self.notice_id} {self.notice_title}" if self.notice_id is not None
                  else "（不明: jpixd の配信記録にない SES メッセージ）")
        return [
            f"- アドレス: {self.email}",
            f"- 種別: {self.subtype or '不明'}",
            f"- 診断コード: {self.diagnostic or '（なし）'}",
            f"- 通知: {notice}",
            f"- 配信: {'#' + str(self.delivery_id) if self.delivery_id is not None else '不明'}",
            f"- 発生日時: {_local(self.occurred_at, self.tz)}",
            f"- SES Message-ID: {self.ses_message_id or '不明'}",
        ]


def bounce_summary(b: BounceFacts) -> str:
    return f"[jpixd] バウンス: {b.email} ({b.subtype or 'Bounce'})"


def bounce_description(b: BounceFacts, marker: str) -> str:
    return "\n".join([f"{b.email} 宛ての通知メールがバウンスしました。", "", *b.lines(), "",
                      _MANAGED, "", marker_line(marker)])


def repeat_comment(b: BounceFacts) -> str:
    return "\n".join(["同じアドレスが再びバウンスしました。", "", *b.lines()])


def guard_summary() -> str:
    return "[jpixd] 送信を一時停止しました（バウンス率・苦情率）"


def guard_description(reason: str, paused_at: datetime, marker: str,
                      tz: tzinfo = JST) -> str:
    return "\n".join([
        "バウンス率または苦情率が SES の審査基準に近づいたため、jpixd が送信を一時停止しました。",
        "", f"- 理由: {reason}", f"- 停止日時: {_local(paused_at, tz)}", "",
        "原因を確認のうえ POST /admin/v1/sending/resume で再開してください。"
        "再開すると jpixd がこの課題を完了にします。", "", marker_line(marker)])


def lifted_comment(by: str) -> str:
    return f"配信停止（サプレッション）が {by} によって解除されました。"


@dataclass(frozen=True)
class CaseFacts:
    """What the store knows about an open case, for `close_reason`."""

    kind: str  # "bounce" | "guard"
    created_at: datetime
    last_event_at: datetime  # the latest bounce, or the guard's pause
    has_subscriber: bool  # a live subscriber row still has this address
    suppressed: bool  # the address is suppressed now
    lifted_at: datetime | None  # when a suppression of the address was last lifted


def close_reason(f: CaseFacts, sending: SendingState, now: datetime,
                 auto_close_after: timedelta) -> str | None:
    """The comment that closes the case's issue, or None while the case is not handled."""
    done = "jpixd が自動的に完了にしました。"
    if f.kind == "guard":
        if sending.paused and sending.actor == "guard" and sending.since == f.last_event_at:
            return None
        if sending.paused:
            return f"送信の一時停止は {sending.actor or '別の操作'} に引き継がれたため、{done}"
        return f"送信が再開されたため（{sending.actor or '不明'}）、{done}"
    if not f.has_subscriber:
        return f"このアドレスの購読者がいなくなった（削除または変更された）ため、{done}"
    if f.lifted_at is not None and f.lifted_at >= f.created_at and not f.suppressed:
        return f"配信停止（サプレッション）が解除されたため、{done}"
    if now - f.last_event_at >= auto_close_after:
        if f.suppressed:
            return (f"このアドレスは配信停止（サプレッション）済みで、最後のバウンスから "
                    f"{_duration(auto_close_after)}が経過したため、{done}")
        return f"最後のバウンスから {_duration(auto_close_after)} 新たなバウンスがないため、{done}"
    return None
