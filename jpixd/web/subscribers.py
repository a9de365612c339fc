"""Admin API: subscribers CRUD (SPEC §4, §8). Validation is jpixd.subscribers'."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from jpixd.model import ALL_CARRIERS, ALL_KINDS, ALL_WINDOWS, Subscriber, SubscriberStatus
from jpixd.prefectures import code_of
from jpixd.store import Conflict
from jpixd.subscribers import Invalid, to_json, validate_changes
from jpixd.web.api import (
    PAGE_QUERY,
    Api,
    ApiError,
    json_body,
    json_response,
    page_body,
    paging,
    path_id,
)
from jpixd.web.keys import RUNTIME

api = Api()
log = structlog.get_logger("jpixd.admin")

_LIST_OF = {"type": "array", "items": {"type": "string"}}
SUBSCRIBER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "readOnly": True},
        "email": {"type": "string", "format": "email"},
        "name": {"type": "string"},
        "organization": {"type": "string"},
        "carriers": {"type": "array", "items": {"type": "string", "enum": list(ALL_CARRIERS)}},
        "prefectures": {**_LIST_OF, "description": "codes 01–47 or names; empty = all"},
        "kinds": {"type": "array", "items": {"type": "string", "enum": list(ALL_KINDS)}},
        "services": {**_LIST_OF, "description": "empty = all"},
        "windows": {"type": "array", "items": {"type": "string", "enum": list(ALL_WINDOWS)}},
        "failure_respects_windows": {"type": "boolean"},
        "charset": {"type": "string", "nullable": True, "enum": ["iso-2022-jp", "utf-8", None]},
        "status": {"type": "string", "enum": [s.value for s in SubscriberStatus]},
        "legacy_id": {"type": "string",
                      "description": "the old system's id (its unsubscribe links carry it)"},
        "created_at": {"type": "string", "format": "date-time", "readOnly": True},
        "updated_at": {"type": "string", "format": "date-time", "readOnly": True},
    },
}
_PAGE = {"type": "object", "properties": {"items": {"type": "array", "items": SUBSCRIBER},
                                          "total": {"type": "integer"}}}


def _validated(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    try:
        return validate_changes(body, creating=creating)
    except Invalid as exc:
        raise ApiError(400, "invalid_subscriber", "the subscriber has invalid fields",
                       fields=exc.fields) from None


def _filters(request: web.Request) -> dict[str, str | None]:
    q = request.query
    out: dict[str, str | None] = {
        "email": q.get("email") or None, "status": q.get("status") or None,
        "carrier": q.get("carrier") or None, "kind": q.get("kind") or None,
        "query": q.get("q") or None, "prefecture": None,
    }
    checks = (("status", [s.value for s in SubscriberStatus]), ("carrier", ALL_CARRIERS),
              ("kind", ALL_KINDS))
    for name, allowed in checks:
        value = out[name]
        if value is not None and value not in allowed:
            raise ApiError(400, "invalid_parameter", f"{name} must be one of "
                           f"{', '.join(allowed)}", fields={name: f"{value!r} is not allowed"})
    if q.get("prefecture"):
        code = code_of(q["prefecture"])
        if code is None:
            raise ApiError(400, "invalid_parameter", "prefecture is not a prefecture",
                           fields={"prefecture": f"{q['prefecture']!r} is not a prefecture"})
        out["prefecture"] = code
    return out


@api.op("GET", "/subscribers", "List subscribers (filters, paging)", response=_PAGE,
        query=(("email", "string", "exact address"), ("status", "string", ""),
               ("carrier", "string", "east | west"), ("kind", "string", ""),
               ("prefecture", "string", "code or name; includes 'all prefectures'"),
               ("q", "string", "text in address, name or organization"), *PAGE_QUERY))
async def list_subscribers(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    limit, offset = paging(request)
    items, total = await rt.store.list_subscribers(**_filters(request), limit=limit,
                                                   offset=offset)
    return json_response(page_body([to_json(s) for s in items], total, limit, offset))


@api.op("POST", "/subscribers", "Create a subscriber", request=SUBSCRIBER,
        response=SUBSCRIBER, status=201)
async def create_subscriber(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    changes = _validated(await json_body(request), creating=True)
    try:
        sub = await rt.store.create_subscriber(Subscriber(**changes), rt.clock())
    except Conflict as exc:
        raise ApiError(409, "duplicate", str(exc), fields={"email": "already subscribed"}) \
            from None
    log.info("subscriber created", subscriber_id=sub.id)
    return json_response(to_json(sub), status=201)


@api.op("GET", "/subscribers/{id}", "One subscriber", response=SUBSCRIBER)
async def get_subscriber(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    sub = await rt.store.get_subscriber(path_id(request))
    if sub is None:
        raise ApiError(404, "not_found", f"no subscriber {request.match_info['id']}")
    return json_response(to_json(sub))


@api.op("PATCH", "/subscribers/{id}", "Change some fields of a subscriber",
        request=SUBSCRIBER, response=SUBSCRIBER)
async def patch_subscriber(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    sid = path_id(request)
    changes = _validated(await json_body(request), creating=False)
    try:
        sub = await rt.store.update_subscriber(sid, changes, rt.clock())
    except Conflict as exc:
        raise ApiError(409, "duplicate", str(exc), fields={"email": "already subscribed"}) \
            from None
    if sub is None:
        raise ApiError(404, "not_found", f"no subscriber {sid}")
    log.info("subscriber changed", subscriber_id=sid, fields=sorted(changes))
    rt.wake("backlog")  # a changed address closes the old one's bounce issue
    return json_response(to_json(sub))


@api.op("DELETE", "/subscribers/{id}",
        "Delete a subscriber (history kept; mail not yet sent is skipped)",
        response={"type": "object", "properties": {"deleted": {"type": "boolean"},
                                                   "id": {"type": "integer"}}})
async def delete_subscriber(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    sid = path_id(request)
    if not await rt.store.delete_subscriber(sid, rt.clock()):
        raise ApiError(404, "not_found", f"no subscriber {sid}")
    log.info("subscriber deleted", subscriber_id=sid)
    rt.wake("backlog")  # its address's bounce issue, if any, is closed
    return json_response({"deleted": True, "id": sid})


@api.op("GET", "/subscribers/{id}/changes",
        "Who changed the subscriber, what and when (admin, import, console, the subscriber "
        "themselves on the self-service pages, one-click), newest first",
        response={"type": "object", "properties": {"items": {"type": "array"}}})
async def subscriber_changes(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    sid = path_id(request)
    changes = await rt.store.subscriber_changes(sid, limit=500)
    if not changes and await rt.store.get_subscriber(sid) is None:
        raise ApiError(404, "not_found", f"no subscriber {sid}")
    return json_response({"items": [{"at": c.at.isoformat(), "actor": c.actor,
                                     "action": c.action, "detail": c.detail}
                                    for c in changes]})
