"""Admin API operations that belong to the daemon as a whole: status, pause, resume."""

from __future__ import annotations

import structlog
from aiohttp import web

from jpixd import __version__
from jpixd.bounces.rules import guard_since
from jpixd.channels.manage import to_json
from jpixd.loop import LEADER_ROLES
from jpixd.model import SendingState
from jpixd.runtime import Runtime
from jpixd.selfmail import limits_of
from jpixd.web.api import Api, ApiError, json_body, json_response
from jpixd.web.keys import API, RUNTIME
from jpixd.web.words import ACTOR_LABELS

api = Api()
log = structlog.get_logger("jpixd.admin")

_SENDING = {
    "type": "object",
    "properties": {
        "paused": {"type": "boolean"},
        "reason": {"type": "string", "nullable": True},
        "actor": {"type": "string", "nullable": True},
        "since": {"type": "string", "format": "date-time", "nullable": True},
        "window_start": {"type": "string", "format": "date-time", "nullable": True},
    },
}
_PAUSE_BODY = {"type": "object", "properties": {"reason": {"type": "string"}}}


@api.op("GET", "/status", "The daemon at a glance: loops, sending, outbox",
        response={"type": "object"})
async def get_status(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    now = rt.clock()
    counts = await rt.store.delivery_counts()
    ready, reasons = rt.supervisor.healthy()
    return json_response({
        "version": __version__,
        "started_at": rt.started_at.isoformat(),
        "ready": ready,
        "reasons": reasons,
        "schema_version": await rt.store.schema_version(),
        "sending": (await rt.store.sending_state()).to_json(),
        "loops": {name: st.to_json() for name, st in rt.supervisor.status.items()},
        "deliveries": {str(state): n for state, n in counts.items()},
        "outbox_oldest_pending_age_seconds": await rt.store.oldest_pending_age(now),
        "sources": [s.name for s in rt.config.sources if s.enabled],
        "transport": rt.config.mail.transport,
        **rt.outbound.status(),
        "backlog": await _backlog_status(rt),
        "mode": await rt.store.mode(),  # {"shadow": true, "since": …} during a cut-over
        "archive": await _archive_status(rt),
        "cluster": _cluster_status(rt),
        "self_service": await self_service_status(rt),
        "channel_messages": await rt.store.channel_message_counts(),
        "channels_in_trouble": [{**to_json(c), "email": email}
                                for c, email in await rt.store.channels_in_trouble()],
    })


async def self_service_status(rt: Runtime) -> dict[str, object] | None:
    """Mail strangers can cause, judged apart from notice mail: its volume and its
    bounces and complaints in the guard's window, against their limits."""
    if rt.config.http.public_listen is None:
        return None
    since = guard_since(rt.clock(), rt.config.bounces, await rt.store.sending_state())
    sent, bounced = await rt.store.self_mail_counts(since)
    limits = limits_of(rt.config.web)
    return {"sent_in_window": sent, "bounces_and_complaints_in_window": bounced,
            "held": bounced >= limits.bounce_limit, "bounce_limit": limits.bounce_limit,
            "per_hour": limits.per_hour, "per_mailbox_hour": limits.per_mailbox_hour}


def _cluster_status(rt: Runtime) -> dict[str, object]:
    """Which host leads which singleton loop: this one all of them on SQLite."""
    if rt.cluster is None:
        return {"backend": "sqlite", "host": None, "leads": list(LEADER_ROLES),
                "hosts": []}
    return rt.cluster.status()


async def _archive_status(rt: Runtime) -> dict[str, object] | None:
    if rt.config.archive is None:
        return None
    pending, oldest = await rt.store.archive_pending()
    return {"kind": rt.config.archive.kind, "pending": pending,
            "oldest": oldest.isoformat() if oldest else None,
            "degraded": getattr(rt.loops.get("archive"), "degraded", None)}


async def _backlog_status(rt: Runtime) -> dict[str, object] | None:
    """Backlog being down shows here (and in the logs), not in readiness: mail flows on
    and the cases wait in the store."""
    loop = rt.loops.get("backlog")
    status = loop.status() if loop is not None else None
    if status is None:
        return None
    return {**status, "tickets": await rt.store.ticket_counts()}


async def _set_sending(request: web.Request, paused: bool) -> web.Response:
    rt = request.app[RUNTIME]
    body = await json_body(request, optional=True)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ApiError(400, "invalid_field", "reason must be a string",
                       fields={"reason": "must be a string"})
    if reason is not None and len(reason) > 500:  # it is stored, logged and shown
        raise ApiError(400, "invalid_field", "reason is longer than 500 characters",
                       fields={"reason": "is longer than 500 characters"})
    state = await set_sending(rt, paused=paused, reason=reason, actor="admin")
    return json_response(state.to_json())


async def set_sending(rt: Runtime, *, paused: bool, reason: str | None,
                      actor: str) -> SendingState:
    """An operator's pause or resume (admin API and console alike): persisted, shown in
    the metric, logged, and seen by the sender and the reconciler at once."""
    by = ACTOR_LABELS.get(actor, actor)
    why = reason or f"{by}から{'停止' if paused else '再開'}"
    state = await rt.outbound.switch.set(paused=paused, reason=why, actor=actor,
                                         now=rt.clock())
    log.info("sending paused" if paused else "sending resumed", actor=actor,
             reason=state.reason)
    rt.wake("sender")
    rt.wake("backlog")  # a guard pause's issue closes on resume, now rather than later
    return state


@api.op("POST", "/sending/pause", "Stop claiming new deliveries (persisted)",
        request=_PAUSE_BODY, response=_SENDING)
async def pause_sending(request: web.Request) -> web.Response:
    return await _set_sending(request, True)


@api.op("POST", "/sending/resume",
        "Resume sending; the bounce-rate guard's window starts afresh",
        request=_PAUSE_BODY, response=_SENDING)
async def resume_sending(request: web.Request) -> web.Response:
    return await _set_sending(request, False)


@api.op("GET", "/openapi.json", "This document")
async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[API].openapi(__version__))
