"""/healthz, /readyz and /metrics: what systemd, the load balancer and New Relic read."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from jpixd.store import StoreError
from jpixd.web.api import json_response
from jpixd.web.keys import RUNTIME


async def healthz(request: web.Request) -> web.Response:
    # Answering at all proves the process and its event loop live.
    return json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    reasons: list[str] = []
    try:
        await asyncio.wait_for(rt.store.ping(), timeout=2.0)
    except (StoreError, TimeoutError) as exc:
        reasons.append("database: " + ("no answer within 2s" if isinstance(exc, TimeoutError)
                                       else "error (see the logs)"))
    if rt.supervisor.stopping.is_set():
        reasons.append("shutting down")
    # Unauthenticated: states only, no error text (it can quote feed or Backlog data);
    # the admin API's status has the details.
    _, loop_reasons = rt.supervisor.healthy(detail=False)
    reasons.extend(loop_reasons)
    sending = await rt.store.sending_state() if not reasons else None
    body = {
        "ready": not reasons,
        "reasons": reasons,
        "loops": {name: {k: v for k, v in st.to_json().items() if k != "last_error"}
                  for name, st in rt.supervisor.status.items()},
        # Paused sending is reported, but a paused daemon is still a working daemon.
        "sending_paused": sending.paused if sending else None,
    }
    return json_response(body, status=200 if not reasons else 503)


async def metrics(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    resp = web.Response(body=generate_latest(rt.metrics.registry))
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def routes() -> list[web.RouteDef]:
    return [web.get("/healthz", healthz), web.get("/readyz", readyz),
            web.get("/metrics", metrics)]
