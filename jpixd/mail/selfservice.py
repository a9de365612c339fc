"""The self-service mails as recipients read them: a sign-up's confirmation link and a
manage link, rendered by the sender from their rows (jpixd.store.selfmail) like any
other mail. A mail to an address nobody has confirmed carries only our own text: no name
or organisation typed into the form, in the body or the `To:` header."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime

from jpixd.mail.render import Recipient, Rendered, Renderer, header_text, local_time
from jpixd.model import Subscriber

KINDS = ("confirm", "manage")
_SUBJECTS = {"confirm": "【工事・故障情報メール】登録の確認",
             "manage": "【工事・故障情報メール】配信条件の変更"}
_TEMPLATES = {"confirm": "confirm.txt.j2", "manage": "manage-link.txt.j2"}


class NoLinks(Exception):
    """The public pages are not configured ([web]): there is no link to mail."""


def compose(renderer: Renderer, kind: str, sub: Subscriber, now: datetime) -> Rendered:
    """The mail of `kind` ("confirm" or "manage") to `sub`, its link signed `now`."""
    links, sid = renderer.links, sub.id
    if links is None or sid is None:
        raise NoLinks("no [web] base_url and secret keys: the self-service links cannot "
                      "be made")
    if kind == "confirm":
        url, expires = links.confirm(sid, now), now + links.confirm_ttl
        sub = replace(sub, name="", organization="")  # nobody has confirmed them
    else:
        url, expires = links.manage(sid, now), now + links.manage_ttl
    body = renderer.page_text(_TEMPLATES[kind], subscriber=Recipient(sub), url=url,
                              expires=local_time(expires, renderer.tz),
                              contact=renderer.cfg.contact)
    message_id = f"<jpixd.s.{kind}.{sid}.{secrets.token_hex(6)}@{renderer.domain}>"
    return renderer.compose(sub, header_text(_SUBJECTS[kind]), body, now=now,
                            message_id=message_id, extra=[])
