"""Admin API: the Backlog cases jpixd keeps (bounced addresses, guard pauses)."""

from __future__ import annotations

from aiohttp import web

from jpixd.web.api import PAGE_QUERY, Api, ApiError, json_response, page_body, paging
from jpixd.web.keys import RUNTIME

api = Api()

_STATES = ("intent", "open", "closing", "closed", "gone")
_KINDS = ("bounce", "guard")


@api.op("GET", "/tickets",
        "Backlog cases, newest first: state intent (not yet in Backlog), open, closing, "
        "closed, gone (deleted in Backlog)",
        response={"type": "object", "properties": {"items": {"type": "array"}}},
        query=(("state", "string", " | ".join(_STATES)), ("kind", "string", " | ".join(_KINDS)),
               ("email", "string", "address"), *PAGE_QUERY))
async def list_tickets(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    limit, offset = paging(request)
    state, kind = request.query.get("state") or None, request.query.get("kind") or None
    for name, value, allowed in (("state", state, _STATES), ("kind", kind, _KINDS)):
        if value is not None and value not in allowed:
            raise ApiError(400, "invalid_parameter", f"{name} must be one of {', '.join(allowed)}",
                           fields={name: f"{value!r} is not one of {', '.join(allowed)}"})
    items, total = await rt.store.list_tickets(state=state, kind=kind,
                                               email=request.query.get("email") or None,
                                               limit=limit, offset=offset)
    return json_response(page_body([t.to_json() for t in items], total, limit, offset))
