"""Builds the operator-side aiohttp application (health, metrics, the admin API and the
console) from a Runtime and the API operations."""

from __future__ import annotations

import hmac
from typing import Any

import structlog
from aiohttp import web

from jpixd.runtime import Runtime
from jpixd.web import (
    admin,
    bounces,
    channels,
    console,
    deliveries,
    health,
    notices,
    quarantine,
    subscribers,
    tickets,
)
from jpixd.web.api import PREFIX, Api, ApiError, Handler
from jpixd.web.guard import Proxies, nul_parameter
from jpixd.web.keys import API, RUNTIME
from jpixd.web.pages import japanese_errors
from jpixd.web.shed import Shedder

log = structlog.get_logger("jpixd.web")


def _authorised(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    # Constant-time: the token must not leak one byte at a time through timing. A header
    # of raw bytes arrives as surrogate escapes: compared as bytes, never an error.
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"),
                               token.encode())


@web.middleware
async def admin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer auth on everything under /admin/v1, and errors in the SPEC's JSON shape."""
    if not request.path.startswith(PREFIX):
        return await handler(request)
    try:
        if not _authorised(request, request.app[RUNTIME].admin_token):
            raise ApiError(401, "unauthorized", "a valid 'Authorization: Bearer <token>' "
                                                "header is required")
        bad = nul_parameter(request)
        if bad is not None:
            raise ApiError(400, "invalid_parameter", f"{bad} contains a NUL character",
                           fields={bad: "contains a NUL character"})
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
                413: "body_too_large"}.get(exc.status, "http_error")
        return ApiError(exc.status, code, exc.reason).response()


def build_app(runtime: Runtime, apis: list[Api] | None = None,
              shedder: Shedder | None = None) -> web.Application:
    """With a shedder: its head timer outermost (it must see every request), its body
    timeout innermost (so that a 408 or 413 still gets the API's error shape)."""
    # Every page but the API's answers a missing path or a failure in Japanese, as the
    # console's pages do (aiohttp's bare English page had no title or language).
    errors = japanese_errors(runtime.config.tz, home=("/console/", "コンソール"),
                             template="console/message.html", skip=PREFIX,
                             logged_in=False, csrf="", path="")
    middlewares: list[Any] = [*console.MIDDLEWARES, admin_middleware, errors]
    if shedder is not None:
        middlewares = [shedder.heads, *console.MIDDLEWARES, admin_middleware, errors,
                       shedder.bodies]
    app = web.Application(middlewares=middlewares, client_max_size=8 * 1024 * 1024)
    merged = Api()
    for part in [admin.api, subscribers.api, channels.api, notices.api, deliveries.api,
                 bounces.api, tickets.api, quarantine.api, *(apis or [])]:
        merged.ops.extend(part.ops)
    app[RUNTIME] = runtime
    app[API] = merged
    app.add_routes(health.routes())
    app.add_routes(deliveries.public_routes())
    app.add_routes(merged.routes())
    console.setup(app, Proxies(runtime.config.web.trusted_proxies,
                                ipv6_prefix=runtime.config.web.ipv6_client_prefix))
    return app
