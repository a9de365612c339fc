"""A subscriber's channels on the console and the manage page: one form, the same
actions (add, test, pause, resume, remove) for the operator and the subscriber. The
rules are jpixd.channels.manage's; the answers are in Japanese (jpixd.web.words)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from multidict import MultiDictProxy

from jpixd.channels.manage import ChannelInvalid, checked, new_secret, room_for_one
from jpixd.runtime import Runtime
from jpixd.store.channels import ChannelNotFound, ChannelNotVerified
from jpixd.web.words import channel_problem_in_words

log = structlog.get_logger("jpixd.web")

PREFIX = "channel_"
ACTIONS = ("add", "test", "pause", "resume", "remove")


@dataclass
class Answer:
    flash: str | None = None
    errors: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)  # what was typed, shown again


def is_channel_action(action: object) -> bool:
    return isinstance(action, str) and action.startswith(PREFIX)


async def act(rt: Runtime, subscriber_id: int, form: MultiDictProxy[Any], *,
              actor: str) -> Answer:
    """`action` is `channel_add`, or `channel_<test|pause|resume|remove>:<id>`."""
    raw = form.get("action")
    what, _, ident = (raw if isinstance(raw, str) else "")[len(PREFIX):].partition(":")
    now = rt.clock()
    if what == "add":
        kind, url = form.get("channel_kind", ""), form.get("channel_url", "")
        typed = {"channel_kind": str(kind), "channel_url": str(url)}
        try:
            kind, url = checked(kind, url, allow_http=rt.config.channels.allow_http)
            room_for_one(len(await rt.store.channels_of(subscriber_id)))
        except ChannelInvalid as exc:
            return Answer(errors={f"channel_{k}" if k != "channels" else "channel_url":
                                  channel_problem_in_words(code)
                                  for k, code in exc.codes.items()}, form=typed)
        ch = await rt.store.add_channel(subscriber_id, kind, url, new_secret(), now,
                                        actor=actor)
        log.info("channel added", subscriber_id=subscriber_id, channel=ch.id, kind=kind,
                 actor=actor)
        rt.wake("channels")
        flash = "通知先を追加しました。テストメッセージを送ります。応答があれば配信を始めます。"
        if kind == "webhook":
            flash += (f" 署名の鍵（X-Jpixd-Signature の検証に使います。この画面でしか表示しま"
                      f"せん）: {ch.secret}")
        return Answer(flash=flash)
    if what not in ACTIONS or not (ident.isascii() and ident.isdigit() and len(ident) < 12):
        return Answer(errors={"channel_url": "操作の指定が正しくありません"})
    cid = int(ident)
    try:
        if what == "test":
            await rt.store.test_channel(subscriber_id, cid, now)
            flash = "テストメッセージを送ります。結果はこの一覧に表示されます。"
        elif what == "remove":
            await rt.store.remove_channel(subscriber_id, cid, now, actor=actor)
            flash = "通知先を削除しました。"
        else:
            await rt.store.set_channel(subscriber_id, cid, now, actor=actor,
                                       active=what == "resume")
            flash = "通知先を一時停止しました。" if what == "pause" else "通知先を再開しました。"
    except ChannelNotFound:
        return Answer(errors={"channel_url": "その通知先はありません（削除済みです）"})
    except ChannelNotVerified:
        return Answer(errors={"channel_url": "テストメッセージへの応答がまだないため、"
                                             "再開できません。テスト送信をお試しください"})
    log.info("channel changed", subscriber_id=subscriber_id, channel=cid, action=what,
             actor=actor)
    rt.wake("channels")
    return Answer(flash=flash)
