"""The admin API's frame: operations that document themselves, errors and JSON bodies.

Handlers are declared with `api.op(...)`, which records the method, path, summary and
schemas; the same records make the routes and `/admin/v1/openapi.json`, so the document
cannot drift from what is served.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Schema = dict[str, Any]

PREFIX = "/admin/v1"

ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "fields": {"type": "object",
                                      "additionalProperties": {"type": "string"}}},
        }
    },
}


class ApiError(Exception):
    """An error a client caused or must know about, rendered as {"error": {...}}."""

    def __init__(self, status: int, code: str, message: str,
                 fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    def response(self) -> web.Response:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return json_response({"error": body}, status=self.status, headers=headers)


def json_response(data: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(data, ensure_ascii=False, default=str),
        status=status, content_type="application/json", charset="utf-8", headers=headers,
    )


async def json_body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong with it."""
    # body_exists (from the headers), not can_read_body: the load shedder has already
    # read the body into aiohttp's cache within its time limit.
    raw = await request.read() if request.body_exists else b""
    if not raw.strip():
        if optional:
            return {}
        raise ApiError(400, "invalid_body", "a JSON object is required")
    try:
        data = json.loads(raw)
        # Lone surrogates ("\ud800") parse but can never be stored or mailed.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, ValueError, RecursionError) as exc:
        # ValueError: also integers over 4,300 digits; RecursionError: 100k-deep nesting.
        raise ApiError(400, "invalid_json",
                       f"body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "body must be a JSON object")
    return data


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # below PREFIX, aiohttp syntax: "/notices/{id}"
    summary: str
    handler: Handler
    request: Schema | None = None
    response: Schema | None = None
    query: tuple[tuple[str, str, str], ...] = ()  # (name, type, description)
    status: int = 200


@dataclass
class Api:
    ops: list[Operation] = field(default_factory=list)

    def op(self, method: str, path: str, summary: str, *, request: Schema | None = None,
           response: Schema | None = None, query: tuple[tuple[str, str, str], ...] = (),
           status: int = 200) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.ops.append(Operation(method, path, summary, handler, request, response,
                                      query, status))
            return handler
        return register

    def routes(self) -> list[web.RouteDef]:
        return [web.route(o.method, PREFIX + o.path, o.handler) for o in self.ops]

    def openapi(self, version: str) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        for o in self.ops:
            item: dict[str, Any] = {
                "summary": o.summary,
                "operationId": o.handler.__name__,
                "responses": {
                    str(o.status): {"description": "OK", "content": {"application/json": {
                        "schema": o.response or {"type": "object"}}}},
                    "401": _error_response("missing or wrong bearer token"),
                    "400": _error_response("invalid input"),
                },
            }
            params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                      for n in _path_params(o.path)]
            params += [{"name": n, "in": "query", "required": False, "description": d,
                        "schema": {"type": t}} for n, t, d in o.query]
            if params:
                item["parameters"] = params
            if o.request is not None:
                item["requestBody"] = {"required": True, "content": {
                    "application/json": {"schema": o.request}}}
            if _path_params(o.path):
                item["responses"]["404"] = _error_response("not found")
            paths.setdefault(PREFIX + o.path, {})[o.method.lower()] = item
        return {
            "openapi": "3.0.3",
            "info": {"title": "jpixd admin API", "version": version},
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                           "schemas": {"Error": ERROR_SCHEMA}},
            "security": [{"bearer": []}],
            "paths": paths,
        }


def _path_params(path: str) -> list[str]:
    return [seg[1:-1].split(":")[0] for seg in path.split("/")
            if seg.startswith("{") and seg.endswith("}")]


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


MAX_ID = 2**63 - 1


def int_param(request: web.Request, name: str, default: int, *, low: int,
              high: int | None = None) -> int:
    """A whole-number query parameter within bounds, or a 400 naming it."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    high = MAX_ID if high is None else high  # the database's integers end at 2**63 - 1
    # ASCII digits only: int() also takes 「１」 and 「١」, which no client means.
    if not (raw.isascii() and raw.lstrip("-").isdigit() and len(raw) <= 20):
        raise ApiError(400, "invalid_parameter", f"{name} must be a whole number",
                       fields={name: f"{raw[:40]!r} is not a whole number"})
    value = int(raw)
    if value < low or value > high:
        bound = f"between {low} and {high}"
        raise ApiError(400, "invalid_parameter", f"{name} must be {bound}",
                       fields={name: f"must be {bound}"})
    return value


def paging(request: web.Request) -> tuple[int, int]:
    return (int_param(request, "limit", 100, low=1, high=1000),
            int_param(request, "offset", 0, low=0))


def path_id(request: web.Request, name: str = "id") -> int:
    """A numeric id from the path; anything else cannot name a row, so it is a 404."""
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise ApiError(404, "not_found", f"no such {name}: {raw[:40]!r}")
    return int(raw)


def page_body(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": limit, "offset": offset}


PAGE_QUERY: tuple[tuple[str, str, str], ...] = (
    ("limit", "integer", "1–1000, default 100"),
    ("offset", "integer", "default 0"),
)
