"""The public listener (`[http] public_listen`): self-service, one-click unsubscribe, the
notice board and its feeds, and nothing else — no admin API, console or metrics, so
that this is all the ALB can ever expose."""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from typing import Any

import structlog
from aiohttp import web

from jpixd.runtime import Runtime
from jpixd.web import board, selfservice
from jpixd.web.context import PUBLIC, PublicContext
from jpixd.web.guard import headers_middleware
from jpixd.web.keys import RUNTIME
from jpixd.web.pages import page, static_routes
from jpixd.web.shed import Shedder

log = structlog.get_logger("jpixd.web")


def japanese_errors(tz: tzinfo) -> Any:
    """Pages a visitor reads in Japanese: a missing page, a wrong method and a server
    error (aiohttp's own were a bare English 「404: Not Found」); what a handler answered
    itself (a form's 400, a feed's 304) is left as it is."""

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPNotFound:
            return page(tz, "message.html", 404, heading="ページが見つかりません",
                        lines=["お探しのページは見つかりませんでした。アドレスをご確認ください。"],
                        link=("/notices", "お知らせ一覧"))
        except web.HTTPMethodNotAllowed:
            return page(tz, "message.html", 405, heading="この操作はできません",
                        lines=["このページはこの方法では開けません。"],
                        link=("/notices", "お知らせ一覧"))
        except web.HTTPException:
            raise
        except Exception:
            log.exception("public page failed", path=request.path)
            return page(tz, "message.html", 500, heading="ただいま表示できません",
                        lines=["一時的な障害です。しばらくしてからもう一度お試しください。"],
                        link=("/notices", "お知らせ一覧"))
    return middleware


def build_public_app(rt: Runtime, ctx: PublicContext,
                     shedder: Shedder | None = None) -> web.Application:
    errors = japanese_errors(rt.config.tz)
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
