"""Admin API: a subscriber's channels besides mail (SPEC §8, issue 26). The rules are
jpixd.channels.manage's; the store's ChannelQueries keep them."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from jpixd.channels import KINDS
from jpixd.channels.manage import ChannelInvalid, checked, new_secret, room_for_one, to_json
from jpixd.store.channels import ChannelNotFound, ChannelNotVerified
from jpixd.web.api import Api, ApiError, json_body, json_response, paging, path_id
from jpixd.web.keys import RUNTIME

api = Api()
log = structlog.get_logger("jpixd.admin")

CHANNEL: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "readOnly": True},
        "kind": {"type": "string", "enum": list(KINDS)},
        "url": {"type": "string", "description": "https URL; shown back only as "
                "scheme://host/…last4"},
        "state": {"type": "string", "enum": ["verifying", "active", "paused"],
                  "description": "verifying until its test message is answered 2xx"},
        "paused_reason": {"type": "string", "nullable": True,
                          "description": "operator | subscriber | gone (404/410 repeatedly)"},
        "secret": {"type": "string", "readOnly": True, "description": "webhook only, "
                   "in the answer to POST only: the key of X-Jpixd-Signature"},
        "last_status": {"type": "integer", "nullable": True},
        "last_error": {"type": "string", "nullable": True},
    },
}
_PATCH = {"type": "object", "properties": {
    "state": {"type": "string", "enum": ["active", "paused"]},
    "url": {"type": "string", "description": "a new URL: verified again"},
    "test": {"type": "boolean", "description": "send a test message now"}}}


def _invalid(exc: ChannelInvalid) -> ApiError:
    return ApiError(400, "invalid_channel", "the channel has invalid fields", fields=exc.fields)


async def _subscriber(request: web.Request) -> int:
    sid = path_id(request)
    if await request.app[RUNTIME].store.get_subscriber(sid) is None:
        raise ApiError(404, "not_found", f"no subscriber {sid}")
    return sid


@api.op("GET", "/subscribers/{id}/channels", "A subscriber's channels and their recent "
        "messages", response={"type": "object", "properties": {
            "items": {"type": "array", "items": CHANNEL}, "messages": {"type": "array"}}})
async def list_channels(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    sid = await _subscriber(request)
    limit, offset = paging(request)
    messages, total = await rt.store.list_channel_messages(subscriber_id=sid, limit=limit,
                                                           offset=offset)
    return json_response({"items": [to_json(c) for c in await rt.store.channels_of(sid)],
                          "messages": messages, "messages_total": total})


@api.op("POST", "/subscribers/{id}/channels", "Add a channel (webhook, slack, teams); it "
        "is verified by a test message before it is active", request=CHANNEL,
        response=CHANNEL, status=201)
async def add_channel(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    sid = await _subscriber(request)
    body = await json_body(request)
    try:
        kind, url = checked(body.get("kind"), body.get("url"),
                            allow_http=rt.config.channels.allow_http)
        room_for_one(len(await rt.store.channels_of(sid)))
    except ChannelInvalid as exc:
        raise _invalid(exc) from None
    ch = await rt.store.add_channel(sid, kind, url, new_secret(), rt.clock(), actor="admin")
    log.info("channel added", subscriber_id=sid, channel=ch.id, kind=kind)
    rt.wake("channels")
    return json_response(to_json(ch, with_secret=True), status=201)


@api.op("PATCH", "/subscribers/{id}/channels/{channel}", "Pause or resume a channel, "
        "give it a new URL (verified again), or send it a test message", request=_PATCH,
        response=CHANNEL)
async def patch_channel(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    sid = await _subscriber(request)
    cid = path_id(request, "channel")
    body = await json_body(request)
    unknown = sorted(set(body) - {"state", "url", "test"})
    if unknown or not body:
        raise ApiError(400, "invalid_channel", "give state, url or test",
                       fields={k: "unknown field" for k in unknown} or None)
    if "state" in body and body["state"] not in ("active", "paused"):
        raise ApiError(400, "invalid_channel", "the channel has invalid fields",
                       fields={"state": "must be active or paused"})
    if "test" in body and not isinstance(body["test"], bool):
        raise ApiError(400, "invalid_channel", "the channel has invalid fields",
                       fields={"test": "must be true or false"})
    now = rt.clock()
    try:
        url = None
        if "url" in body:
            current = await rt.store.get_channel(sid, cid)
            _, url = checked(current.kind, body["url"],
                             allow_http=rt.config.channels.allow_http)
        ch = await rt.store.set_channel(
            sid, cid, now, actor="admin", url=url,
            active=None if "state" not in body else body["state"] == "active")
        if body.get("test"):
            await rt.store.test_channel(sid, cid, now)
    except ChannelInvalid as exc:
        raise _invalid(exc) from None
    except ChannelNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except ChannelNotVerified as exc:
        raise ApiError(409, "not_verified", str(exc)) from None
    log.info("channel changed", subscriber_id=sid, channel=cid, fields=sorted(body))
    rt.wake("channels")
    return json_response(to_json(ch))


@api.op("DELETE", "/subscribers/{id}/channels/{channel}", "Remove a channel (its messages "
        "not yet sent are not sent)", response={"type": "object"})
async def delete_channel(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    sid = await _subscriber(request)
    cid = path_id(request, "channel")
    try:
        await rt.store.remove_channel(sid, cid, rt.clock(), actor="admin")
    except ChannelNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    log.info("channel removed", subscriber_id=sid, channel=cid)
    return json_response({"deleted": True, "id": cid})
