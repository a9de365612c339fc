"""Typed application state (aiohttp AppKey) instead of string keys."""

from aiohttp import web

from jpixd.runtime import Runtime
from jpixd.web.api import Api

RUNTIME = web.AppKey("runtime", Runtime)
API = web.AppKey("api", Api)
