"""A Backlog API v2 on 127.0.0.1 that is as strict as the documented one.

It wants `apiKey` in the query on every request, form-encoded bodies on POST and PATCH
(a JSON body is refused), the documented parameter names (`projectId[]`, `id[]`,
`notifiedUserId[]`), and answers errors as `{"errors": [{"message", "code",
"moreInfo"}]}`. Every response carries `X-RateLimit-Limit/Remaining/Reset` per category
(read, update, search) over one-minute windows of its clock; over the limit it answers
429 with code 13. Faults are injected per request: a status, a dropped connection, a
hang, optionally after the request has been applied (Backlog's 201 lost on the way).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from jpixd.model import JST
from tests.loopback import serve_app

API_KEY = "fake-backlog-api-key-0123456789abcdef"
PROJECT = {"id": 101, "projectKey": "NOC", "name": "NOC 運用"}
ISSUE_TYPES = [{"id": 501, "projectId": 101, "name": "バウンス", "color": "#e30000"},
               {"id": 502, "projectId": 101, "name": "タスク", "color": "#7ea800"}]
STATUSES = [{"id": 1, "projectId": 101, "name": "未対応"},
            {"id": 2, "projectId": 101, "name": "処理中"},
            {"id": 3, "projectId": 101, "name": "処理済み"},
            {"id": 4, "projectId": 101, "name": "完了"}]
PRIORITIES = [{"id": 2, "name": "高"}, {"id": 3, "name": "中"}, {"id": 4, "name": "低"}]


@dataclass
class Fault:
    """Answer matching requests with `status` (or drop the connection, or hang)."""

    status: int | str  # an HTTP status, "disconnect" or "hang"
    method: str | None = None  # None: any
    path: str | None = None  # a prefix of the path after /api/v2; None: any
    times: int | None = None  # None: until `until`, or until removed
    until: float | None = None  # clock time at which the fault ends
    applied: bool = False  # do the request's work first, then fail the answer

    def matches(self, method: str, path: str, now: float) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.until is not None and now >= self.until:
            return False
        return (self.method in (None, method)) and (self.path is None or path.startswith(self.path))


@dataclass
class FakeIssue:
    id: int
    key: str
    summary: str
    description: str
    issue_type_id: int
    priority_id: int
    status_id: int = 1
    notified: list[int] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    created: float = 0.0  # epoch seconds on the server's clock

    def to_json(self) -> dict[str, Any]:
        status = next(s for s in STATUSES if s["id"] == self.status_id)
        return {"id": self.id, "projectId": PROJECT["id"], "issueKey": self.key,
                "keyId": int(self.key.split("-")[1]), "summary": self.summary,
                "description": self.description,
                "issueType": next(t for t in ISSUE_TYPES if t["id"] == self.issue_type_id),
                "priority": next(p for p in PRIORITIES if p["id"] == self.priority_id),
                "status": status,
                "created": datetime.fromtimestamp(int(self.created), UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ")}


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"errors": [{"message": message, "code": code,
                                          "moreInfo": ""}]}, status=status)


class FakeBacklog:
    def __init__(self, clock: Callable[[], float] = time.time, limit: int = 600) -> None:
        self.clock = clock
        self.api_key = API_KEY  # a test may revoke it
        self.limit = limit  # requests per minute per category
        self.issues: dict[int, FakeIssue] = {}
        self.deleted: set[int] = set()
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []  # (method, path, status)
        self.update_times: list[float] = []
        self.keywords: list[str] = []  # every keyword search, in order
        self.inflight = self.max_inflight = 0  # Nulab: no concurrent requests
        # A keyword search does not see issues younger than this (a search index that
        # lags behind, as a full-text index may).
        self.search_lag = 0.0
        self.windows: dict[str, tuple[float, int]] = defaultdict(lambda: (0.0, 0))
        self.hanging: list[asyncio.Event] = []
        # Called after a create has been applied, before it is answered (crash tests).
        self.after_create: Callable[[FakeIssue], None] | None = None
        self.base = ""
        self.project_body: dict[str, Any] = dict(PROJECT)  # a test may make it odd
        self._next_id = 9001

    # -- what a person does in Backlog's web UI ----------------------------------------

    def close_by_hand(self, key: str) -> None:
        self.by_key(key).status_id = 4

    def delete_by_hand(self, key: str) -> None:
        issue = self.by_key(key)
        del self.issues[issue.id]
        self.deleted.add(issue.id)

    def add_issue(self, summary: str, description: str = "", *, issue_type_id: int = 502,
                  priority_id: int = 3, notified: list[int] | None = None) -> FakeIssue:
        """A new issue, as a create (or a person in the web UI) makes it."""
        self._next_id += 1
        number = len(self.issues) + len(self.deleted) + 1
        issue = FakeIssue(id=self._next_id, key=f"NOC-{number}", summary=summary,
                          description=description, issue_type_id=issue_type_id,
                          priority_id=priority_id, notified=notified or [],
                          created=self.clock())
        self.issues[issue.id] = issue
        return issue

    def by_key(self, key: str) -> FakeIssue:
        return next(i for i in self.issues.values() if i.key == key)

    def count(self, method: str, path_prefix: str, status: int | None = None) -> int:
        return sum(1 for m, p, s in self.log if m == method and p.startswith(path_prefix)
                   and (status is None or s == status))

    # -- the HTTP side --------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            # A turn of the event loop, so that a second request sent at the same time
            # would be seen in flight here.
            await asyncio.sleep(0)
            return await self._answer(request, handler)
        finally:
            self.inflight -= 1

    async def _answer(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path.removeprefix("/api/v2")
        if request.query.get("apiKey") != self.api_key:
            resp: web.StreamResponse = _error(401, 11, "Authentication failure.")
            self.log.append((request.method, path, 401))
            return resp
        category = ("search" if request.method == "GET" and path == "/issues"
                    else "read" if request.method == "GET" else "update")
        now = self.clock()
        start, used = self.windows[category]
        if now >= start + 60:
            start, used = math.floor(now / 60) * 60, 0
        headers = {"X-RateLimit-Limit": str(self.limit),
                   "X-RateLimit-Reset": str(int(start + 60))}
        if used >= self.limit:
            headers["X-RateLimit-Remaining"] = "0"
            self.windows[category] = (start, used)
            self.log.append((request.method, path, 429))
            resp = _error(429, 13, "API rate limit exceeded.")
            resp.headers.update(headers)
            return resp
        used += 1
        self.windows[category] = (start, used)
        headers["X-RateLimit-Remaining"] = str(self.limit - used)
        if category == "update":
            self.update_times.append(now)
        fault = next((f for f in self.faults if f.matches(request.method, path, now)), None)
        if fault is not None and fault.times is not None:
            fault.times -= 1
        if fault is not None and not fault.applied:
            return await self._fail(request, path, fault)
        if request.method in ("POST", "PATCH") and request.content_type != \
                "application/x-www-form-urlencoded":
            resp = _error(400, 7, "Content-Type must be application/x-www-form-urlencoded.")
        else:
            try:
                resp = await handler(request)
            except web.HTTPNotFound:
                resp = _error(404, 6, "No such resource.")
        if fault is not None:
            return await self._fail(request, path, fault)
        resp.headers.update(headers)
        self.log.append((request.method, path, resp.status))
        return resp

    async def _fail(self, request: web.Request, path: str, fault: Fault) -> web.StreamResponse:
        self.log.append((request.method, path, -1 if isinstance(fault.status, str)
                         else fault.status))
        if fault.status == "hang":
            ev = asyncio.Event()
            self.hanging.append(ev)
            await ev.wait()
        if fault.status in ("disconnect", "hang"):
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError("fault: connection dropped")
        return web.Response(status=int(fault.status), text="<html>Service Unavailable</html>",
                            content_type="text/html")

    async def project(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if key not in (PROJECT["projectKey"], str(PROJECT["id"])):
            return _error(404, 6, "No project.")
        sub = request.match_info.get("sub")
        if sub == "issueTypes":
            return web.json_response(ISSUE_TYPES)
        if sub == "statuses":
            return web.json_response(STATUSES)
        if sub:
            raise web.HTTPNotFound()
        return web.json_response(self.project_body)

    async def priorities(self, request: web.Request) -> web.Response:
        return web.json_response(PRIORITIES)

    async def create(self, request: web.Request) -> web.Response:
        form = await request.post()
        missing = [k for k in ("projectId", "summary", "issueTypeId", "priorityId")
                   if not form.get(k)]
        if missing:
            return _error(400, 7, f"No parameter: {', '.join(missing)}")
        if form["projectId"] != str(PROJECT["id"]):
            return _error(400, 7, "No project.")
        if int(str(form["issueTypeId"])) not in {t["id"] for t in ISSUE_TYPES}:
            return _error(400, 7, "No issue type.")
        if int(str(form["priorityId"])) not in {p["id"] for p in PRIORITIES}:
            return _error(400, 7, "No priority.")
        issue = self.add_issue(str(form["summary"]), str(form.get("description", "")),
                               issue_type_id=int(str(form["issueTypeId"])),
                               priority_id=int(str(form["priorityId"])),
                               notified=[int(str(u))
                                         for u in form.getall("notifiedUserId[]", [])])
        if self.after_create is not None:
            self.after_create(issue)
        return web.json_response(issue.to_json(), status=201)

    async def search(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            count = int(q.get("count", "20"))
            offset = int(q.get("offset", "0"))
        except ValueError:
            return _error(400, 7, "count and offset must be numbers.")
        if not 1 <= count <= 100:
            return _error(400, 7, "count must be between 1 and 100.")
        found = list(self.issues.values())
        if q.getall("projectId[]", []) and str(PROJECT["id"]) not in q.getall("projectId[]"):
            found = []
        if ids := {int(i) for i in q.getall("id[]", [])}:
            found = [i for i in found if i.id in ids]
        if statuses := {int(s) for s in q.getall("statusId[]", [])}:
            found = [i for i in found if i.status_id in statuses]
        if kw := q.get("keyword"):
            self.keywords.append(kw)
            indexed = self.clock() - self.search_lag
            found = [i for i in found if (kw in i.summary or kw in i.description)
                     and i.created <= indexed]
        if since := q.get("createdSince"):  # a day in the space's time zone (JST here)
            start = datetime.fromisoformat(since).replace(tzinfo=JST).timestamp()
            found = [i for i in found if i.created >= start]
        key = (lambda i: (i.created, i.id)) if q.get("sort") == "created" else (lambda i: i.id)
        found.sort(key=key, reverse=q.get("order", "desc") == "desc")
        return web.json_response([i.to_json() for i in found[offset:offset + count]])

    def _issue(self, request: web.Request) -> FakeIssue | None:
        ref = request.match_info["ref"]
        return next((i for i in self.issues.values() if ref in (str(i.id), i.key)), None)

    async def get_issue(self, request: web.Request) -> web.Response:
        issue = self._issue(request)
        return web.json_response(issue.to_json()) if issue else _error(404, 6, "No issue.")

    async def update(self, request: web.Request) -> web.Response:
        issue = self._issue(request)
        if issue is None:
            return _error(404, 6, "No issue.")
        form = await request.post()
        if "statusId" in form:
            status = int(str(form["statusId"]))
            if status not in {s["id"] for s in STATUSES}:
                return _error(400, 7, "No status.")
            issue.status_id = status
        if form.get("comment"):
            issue.comments.append(str(form["comment"]))
        return web.json_response(issue.to_json())

    async def add_comment(self, request: web.Request) -> web.Response:
        issue = self._issue(request)
        if issue is None:
            return _error(404, 6, "No issue.")
        form = await request.post()
        if not form.get("content"):
            return _error(400, 7, "No parameter: content")
        issue.comments.append(str(form["content"]))
        return web.json_response({"id": len(issue.comments), "content": form["content"]},
                                 status=201)

    async def comments(self, request: web.Request) -> web.Response:
        issue = self._issue(request)
        if issue is None:
            return _error(404, 6, "No issue.")
        items = [{"id": n + 1, "content": c} for n, c in enumerate(issue.comments)]
        if request.query.get("order", "desc") == "desc":
            items.reverse()
        return web.json_response(items[:int(request.query.get("count", "20"))])

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware])
        app.router.add_get("/api/v2/projects/{key}", self.project)
        app.router.add_get("/api/v2/projects/{key}/{sub}", self.project)
        app.router.add_get("/api/v2/priorities", self.priorities)
        app.router.add_post("/api/v2/issues", self.create)
        app.router.add_get("/api/v2/issues", self.search)
        app.router.add_get("/api/v2/issues/{ref}", self.get_issue)
        app.router.add_patch("/api/v2/issues/{ref}", self.update)
        app.router.add_post("/api/v2/issues/{ref}/comments", self.add_comment)
        app.router.add_get("/api/v2/issues/{ref}/comments", self.comments)
        return app


@asynccontextmanager
async def backlog_server(clock: Callable[[], float] = time.time,
                         limit: int = 600) -> AsyncIterator[FakeBacklog]:
    fake = FakeBacklog(clock, limit)

    def release() -> None:
        for ev in fake.hanging:
            ev.set()

    async with serve_app(fake.app(), release) as fake.base:
        yield fake
