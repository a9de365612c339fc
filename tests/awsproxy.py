"""Forwarding to moto from a fault-injecting proxy on loopback (shared by the tests that
put a proxy in front of an AWS endpoint)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

_HOP_BY_HOP = ("content-length", "transfer-encoding", "content-encoding")


async def forward(session: aiohttp.ClientSession, target: str, request: web.Request,
                  body: bytes) -> web.Response:
    """Send the request on to `target` unchanged and hand back its answer."""
    headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
    async with session.request(request.method, target + request.path_qs, data=body,
                               headers=headers) as up:
        return web.Response(body=await up.read(), status=up.status, headers={
            k: v for k, v in up.headers.items() if k.lower() not in _HOP_BY_HOP})
