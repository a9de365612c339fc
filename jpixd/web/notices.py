"""Admin API: sources (state, poll now) and notices with their revision history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from jpixd.logs import REDACTOR
from jpixd.model import ALL_KINDS, NoticeStatus, StoredNotice, notice_to_json
from jpixd.prefectures import code_of
from jpixd.web.api import PAGE_QUERY, Api, ApiError, json_response, page_body, paging, path_id
from jpixd.web.keys import RUNTIME

api = Api()

NOTICE: dict[str, Any] = {"type": "object", "properties": {
    "id": {"type": "integer"}, "source": {"type": "string"},
    "external_id": {"type": "string"}, "carrier": {"type": "string"},
    "kind": {"type": "string"}, "status": {"type": "string"}, "title": {"type": "string"},
    "starts_at": {"type": "string", "nullable": True},
    "prefectures": {"type": "array", "items": {"type": "string"}},
    "revision": {"type": "string"}, "last_changed": {"type": "string"}}}


def _notice(sn: StoredNotice) -> dict[str, Any]:
    return {"id": sn.id, **notice_to_json(sn.notice), "revision": sn.revision,
            "first_seen": sn.first_seen.isoformat(), "last_changed": sn.last_changed.isoformat(),
            "last_seen": sn.last_seen.isoformat()}


@api.op("GET", "/sources", "Sources with their poll state",
        response={"type": "object", "properties": {"items": {"type": "array"}}})
async def list_sources(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    items = []
    for src in rt.config.sources:
        st = await rt.store.source_state(src.name)
        items.append({
            "name": src.name, "kind": src.kind, "carrier": src.carrier,
            "url": REDACTOR.text(src.url),
            "enabled": src.enabled, "interval_s": src.interval.total_seconds(),
            "permanent_url": REDACTOR.text(st.permanent_url)
            if st.permanent_url and st.permanent_for == src.url else None,
            "baseline_done": st.baseline_done,
            "last_success_at": st.last_success_at.isoformat() if st.last_success_at else None,
            "last_error_at": st.last_error_at.isoformat() if st.last_error_at else None,
            "last_error": REDACTOR.text(st.last_error) if st.last_error else None,
            "consecutive_failures": st.consecutive_failures,
            "next_poll_at": st.next_poll_at.isoformat() if st.next_poll_at else None,
            "last_result": st.last_result, "last_items": st.last_items,
            "layout_warning": st.layout_warning,
            "detail_error": REDACTOR.text(st.detail_error) if st.detail_error else None,
        })
    return json_response({"items": items})


@api.op("POST", "/sources/{name}/poll", "Poll a source now; says what changed",
        response={"type": "object", "properties": {
            "result": {"type": "string"}, "counts": {"type": "object"},
            "changes": {"type": "array"}}})
async def poll_source(request: web.Request) -> web.Response:
    poll = request.app[RUNTIME].poll_source
    if poll is None:
        raise ApiError(404, "not_found", "no sources are configured")
    name = request.match_info["name"]
    report = await poll(name)
    if report is None:
        raise ApiError(404, "not_found", f"no source named {name!r}")
    return json_response(report.to_json())


def _since(request: web.Request) -> datetime | None:
    raw = request.query.get("since")
    if not raw:
        return None
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", "since must be an ISO 8601 time",
                       fields={"since": f"{raw!r} is not an ISO 8601 time"}) from None
    if dt.tzinfo is None:
        raise ApiError(400, "invalid_parameter", "since needs a time zone",
                       fields={"since": "add a zone, e.g. +09:00"})
    try:
        dt.astimezone(UTC)
    except OverflowError:
        dt = datetime.min.replace(tzinfo=UTC) if dt.year < 2 else datetime.max.replace(
            tzinfo=UTC)
    if not 1900 <= dt.year <= 2200:
        raise ApiError(400, "invalid_parameter", "since must be between 1900 and 2200",
                       fields={"since": "must be between 1900 and 2200"})
    return dt


def _notice_filters(request: web.Request) -> dict[str, Any]:
    q = request.query
    kind, status = q.get("kind") or None, q.get("status") or None
    if kind is not None and kind not in ALL_KINDS:
        raise ApiError(400, "invalid_parameter", "unknown kind", fields={"kind": kind})
    if status is not None and status not in {s.value for s in NoticeStatus}:
        raise ApiError(400, "invalid_parameter", "unknown status", fields={"status": status})
    prefecture = None
    if q.get("prefecture"):
        prefecture = code_of(q["prefecture"])
        if prefecture is None:
            raise ApiError(400, "invalid_parameter", "unknown prefecture",
                           fields={"prefecture": f"{q['prefecture']!r} is not a prefecture"})
    return {"source": q.get("source") or None, "kind": kind, "status": status,
            "prefecture": prefecture, "since": _since(request)}


@api.op("GET", "/notices", "Notices, most recently changed first",
        response={"type": "object", "properties": {"items": {"type": "array",
                                                              "items": NOTICE}}},
        query=(("source", "string", ""), ("kind", "string", "construction | failure"),
               ("status", "string", ""), ("prefecture", "string", "code or name"),
               ("since", "string", "ISO 8601; changed at or after"), *PAGE_QUERY))
async def list_notices(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    limit, offset = paging(request)
    items, total = await rt.store.list_notices(**_notice_filters(request), limit=limit,
                                               offset=offset)
    return json_response(page_body([_notice(n) for n in items], total, limit, offset))


@api.op("GET", "/notices/{id}", "A notice with its revisions and its deliveries by state",
        response=NOTICE)
async def get_notice(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    nid = path_id(request)
    sn = await rt.store.get_notice(nid)
    if sn is None:
        raise ApiError(404, "not_found", f"no notice {nid}")
    revisions = [{"id": r.id, "revision": r.revision, "change": str(r.change),
                  "mailed": r.mailed, "seen_at": r.seen_at.isoformat(), "content": r.content}
                 for r in await rt.store.revisions(nid)]
    return json_response({**_notice(sn), "revisions": revisions,
                          "deliveries": await rt.store.notice_delivery_counts(nid)})
