"""Admin API: suppressions (list, lift), the SES events (bounces, complaints, …) and the
self-service mails that strangers can cause (judged apart from notice mail)."""

from __future__ import annotations

from urllib.parse import unquote

import structlog
from aiohttp import web

from jpixd.subscribers import normalise_email
from jpixd.web.api import PAGE_QUERY, Api, ApiError, json_response, page_body, paging
from jpixd.web.keys import RUNTIME

api = Api()
log = structlog.get_logger("jpixd.admin")


@api.op("GET", "/suppressions", "Addresses that are not sent to, and why",
        response={"type": "object", "properties": {"items": {"type": "array"}}},
        query=PAGE_QUERY)
async def list_suppressions(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    limit, offset = paging(request)
    items, total = await rt.store.list_suppressions(limit=limit, offset=offset)
    return json_response(page_body(items, total, limit, offset))


@api.op("DELETE", "/suppressions/{email}",
        "Lift a suppression (history kept); a suppressed subscriber becomes active",
        response={"type": "object", "properties": {"lifted": {"type": "boolean"}}})
async def lift_suppression(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    raw = unquote(request.match_info["email"])
    try:
        email = normalise_email(raw)
    except ValueError as exc:
        raise ApiError(400, "invalid_parameter", str(exc), fields={"email": str(exc)}) from None
    if not await rt.store.lift_suppression(email, by="admin", now=rt.clock()):
        raise ApiError(404, "not_found", f"{email} is not suppressed")
    log.warning("suppression lifted by admin", email=email)
    rt.wake("backlog")  # say so on the address's issue, and close it
    return json_response({"lifted": True, "email": email})


@api.op("GET", "/bounces", "SES events, newest first (bounces, complaints, deliveries, …)",
        response={"type": "object", "properties": {"items": {"type": "array"}}},
        query=(("type", "string", "Bounce | Complaint | Delivery | DeliveryDelay | …"),
               ("recipient", "string", "address"), *PAGE_QUERY))
async def list_bounces(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    limit, offset = paging(request)
    items, total = await rt.store.list_events(
        type_=request.query.get("type") or None,
        recipient=request.query.get("recipient") or None, limit=limit, offset=offset)
    return json_response(page_body(items, total, limit, offset))


@api.op("GET", "/self-mails",
        "Self-service mails (sign-up confirmations, manage links), newest first: pending, "
        "sending, retry, sent (with the SES message id), skipped, suppressed or failed, and why",
        response={"type": "object", "properties": {"items": {"type": "array"}}},
        query=PAGE_QUERY)
async def list_self_mails(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    limit, offset = paging(request)
    items, total = await rt.store.list_self_mails(limit=limit, offset=offset)
    return json_response(page_body(items, total, limit, offset))
