"""The public listener (`[http] public_listen`): self-service, one-click unsubscribe, the
notice board and its feeds, and nothing else — no admin API, console or metrics, so
that this is all the ALB can ever expose."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from jpixd.runtime import Runtime
from jpixd.web import board, selfservice
from jpixd.web.context import PUBLIC, PublicContext
from jpixd.web.guard import headers_middleware
from jpixd.web.keys import RUNTIME
from jpixd.web.pages import japanese_errors, static_routes
from jpixd.web.shed import Shedder


def build_public_app(rt: Runtime, ctx: PublicContext,
                     shedder: Shedder | None = None) -> web.Application:
    errors = japanese_errors(rt.config.tz, home=("/notices", "お知らせ一覧"))
    middlewares: list[Any] = [headers_middleware, errors]
    if shedder is not None:
        middlewares = [shedder.heads, headers_middleware, errors, shedder.bodies]
    # Forms are small: a megabyte is far more than any of ours.
    app = web.Application(middlewares=middlewares, client_max_size=1024 * 1024)
    app[RUNTIME] = rt
    app[PUBLIC] = ctx
    app.add_routes(static_routes())
    app.add_routes(selfservice.routes())
    legacy = rt.config.web.legacy_unsubscribe_path
    if legacy is not None:  # the old system's links, in mails sent before the switch
        app.add_routes(selfservice.legacy_routes(legacy))
    app.add_routes(board.routes())
    return app
