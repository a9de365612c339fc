"""Admin API: deliveries (list, retry) and the preview of a rendered mail; and the public
one-click unsubscribe that List-Unsubscribe-Post points at (RFC 8058)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from jpixd.mail.render import check_unsubscribe_token
from jpixd.model import Change, Delivery, DeliveryState, SubscriberStatus
from jpixd.outbox import retry_action
from jpixd.runtime import Runtime
from jpixd.web.api import (
    PAGE_QUERY,
    Api,
    ApiError,
    int_param,
    json_response,
    page_body,
    paging,
    path_id,
)
from jpixd.web.keys import RUNTIME

api = Api()
log = structlog.get_logger("jpixd.admin")

DELIVERY: dict[str, Any] = {"type": "object", "properties": {
    "id": {"type": "integer"},
    # None for self-service mail (purpose "confirm" or "manage"): it has no notice.
    "notice_id": {"type": "integer", "nullable": True},
    "subscriber_id": {"type": "integer"}, "email": {"type": "string"},
    "purpose": {"type": "string",
                "enum": ["notice", "reminder", "confirm", "manage"]},
    "state": {"type": "string"},
    "reason": {"type": "string", "nullable": True}, "attempts": {"type": "integer"},
    "not_before": {"type": "string"}, "ses_message_id": {"type": "string", "nullable": True}}}


def delivery_json(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id, "notice_id": d.notice_id, "revision_id": d.revision_id,
        "subscriber_id": d.subscriber_id, "email": d.email, "purpose": d.purpose,
        "slot": d.slot, "priority": d.priority, "state": str(d.state), "reason": d.reason,
        "attempts": d.attempts, "not_before": d.not_before.isoformat(),
        "sent_at": d.sent_at.isoformat() if d.sent_at else None,
        "message_id": d.message_id, "ses_message_id": d.ses_message_id,
        "last_error": d.last_error,
    }


@api.op("GET", "/deliveries", "Deliveries by state and notice",
        response={"type": "object", "properties": {"items": {"type": "array",
                                                              "items": DELIVERY}}},
        query=(("state", "string", "pending | sending | sent | retry | failed | "
                                   "suppressed | skipped"),
               ("notice", "integer", "notice id"), *PAGE_QUERY))
async def list_deliveries(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    state = request.query.get("state") or None
    if state is not None and state not in {s.value for s in DeliveryState}:
        raise ApiError(400, "invalid_parameter", "unknown state",
                       fields={"state": f"{state!r} is not a delivery state"})
    notice = int_param(request, "notice", 0, low=0) or None
    limit, offset = paging(request)
    items, total = await rt.store.list_deliveries(state=state, notice_id=notice, limit=limit,
                                                  offset=offset)
    return json_response(page_body([delivery_json(d) for d in items], total, limit, offset))


@api.op("POST", "/deliveries/{id}/retry",
        "Send a failed, skipped or waiting delivery again, now", response=DELIVERY)
async def retry_delivery(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    did = path_id(request)
    result = await send_now(rt, did, actor="admin")
    if isinstance(result, Refusal):
        raise ApiError(404 if result.code == "not_found" else 409, result.code,
                       result.message)
    return json_response(delivery_json(result))


@dataclass(frozen=True)
class Refusal:
    code: str  # not_found | not_retryable | suppressed
    message: str


async def send_now(rt: Runtime, did: int, *, actor: str) -> Delivery | Refusal:
    """An operator's "send it now" (admin API and console alike): the delivery, due now,
    or why it may not be sent again."""
    current = await rt.store.get_delivery(did)
    if current is None:
        return Refusal("not_found", f"no delivery {did}")
    if retry_action(current.state) is None:
        return Refusal("not_retryable", f"delivery {did} is {current.state}")
    if await rt.store.is_suppressed(current.email):
        return Refusal("suppressed", f"{current.email} is suppressed; lift the suppression "
                                     "first (DELETE suppressions/{email})")
    updated = await rt.store.retry_delivery(did, rt.clock())
    assert updated is not None
    log.info("delivery sent again on request", delivery_id=did, actor=actor)
    rt.wake("sender")
    return updated


@api.op("GET", "/preview", "The exact MIME message a subscriber would get for a notice",
        response={"type": "string"},
        query=(("notice", "integer", "notice id"), ("subscriber", "integer", "subscriber id"),
               ("change", "string", "new | update | cancel | complete | recover | reminder")))
async def preview(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    nid = int_param(request, "notice", 0, low=1)
    sid = int_param(request, "subscriber", 0, low=1)
    stored = await rt.store.get_notice(nid)
    sub = await rt.store.get_subscriber(sid)
    if stored is None or sub is None:
        raise ApiError(404, "not_found", "no such notice" if stored is None
                       else "no such subscriber")
    try:
        change = Change(request.query.get("change", "new"))
    except ValueError:
        raise ApiError(400, "invalid_parameter", "unknown change",
                       fields={"change": request.query.get("change", "")}) from None
    if rt.renderer is None:
        raise ApiError(503, "no_sender", "the sender is not running")
    mail = rt.renderer().render(delivery_id=0, notice_id=nid, notice=stored.notice,
                                change=change, sub=sub, now=rt.clock())
    return web.Response(body=mail.data, content_type="message/rfc822")


async def one_click_unsubscribe(request: web.Request) -> web.Response:
    """POST (RFC 8058) or GET from the List-Unsubscribe link: the subscriber stops."""
    rt = request.app[RUNTIME]
    token = request.query.get("token", "")
    sid = check_unsubscribe_token(rt.renderer().unsubscribe_key, token) \
        if rt.renderer is not None else None
    if sid is None:
        return web.Response(status=400, text="この配信停止リンクは無効です。\n",
                            content_type="text/plain", charset="utf-8")
    if request.method == "POST":
        updated = await rt.store.update_subscriber(
            sid, {"status": SubscriberStatus.UNSUBSCRIBED}, rt.clock())
        log.info("subscriber unsubscribed by one-click", subscriber_id=sid,
                 found=updated is not None)
        return web.Response(text="配信を停止しました。\n", content_type="text/plain",
                            charset="utf-8")
    # A GET (a person clicking, or a mail scanner following links) changes nothing.
    return web.Response(text="配信を停止するには、このページのフォームから送信してください。\n"
                        '<form method="post"><button>配信停止</button></form>',
                        content_type="text/html", charset="utf-8")


def public_routes() -> list[web.RouteDef]:
    return [web.post("/unsubscribe", one_click_unsubscribe),
            web.get("/unsubscribe", one_click_unsubscribe)]
