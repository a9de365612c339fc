"""Admin API: the quarantine — feed items, pages, SQS messages, Backlog cases and
deliveries that could not be understood, kept verbatim for a person to look at."""

from __future__ import annotations

import structlog
from aiohttp import web

from jpixd.web.api import (
    PAGE_QUERY,
    Api,
    ApiError,
    json_response,
    page_body,
    paging,
    path_id,
)
from jpixd.web.keys import RUNTIME

api = Api()
log = structlog.get_logger("jpixd.admin")
ORIGINS = ("feed", "sqs", "backlog", "delivery")


@api.op("GET", "/quarantine", "What could not be understood, newest first",
        response={"type": "object", "properties": {"items": {"type": "array"}}},
        query=(("origin", "string", " | ".join(ORIGINS)), *PAGE_QUERY))
async def list_quarantine(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    origin = request.query.get("origin") or None
    if origin is not None and origin not in ORIGINS:
        raise ApiError(400, "invalid_parameter", f"origin must be one of {', '.join(ORIGINS)}",
                       fields={"origin": f"{origin[:40]!r} is not one of {', '.join(ORIGINS)}"})
    limit, offset = paging(request)
    items, total = await rt.store.list_quarantine(origin=origin, limit=limit, offset=offset)
    return json_response(page_body(items, total, limit, offset))


@api.op("DELETE", "/quarantine/{id}", "Drop an entry once looked at",
        response={"type": "object", "properties": {"dropped": {"type": "boolean"}}})
async def drop_quarantined(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    entry = path_id(request)
    if not await rt.store.drop_quarantined(entry):
        raise ApiError(404, "not_found", f"no quarantine entry {entry}")
    log.info("quarantine entry dropped by admin", entry=entry)
    return json_response({"dropped": True})
