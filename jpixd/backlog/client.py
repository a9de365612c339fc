"""An async client for the parts of Backlog API v2 that jpixd uses.

Nulab's conventions, followed exactly: the API key as the `apiKey` query parameter (on
POST and PATCH too), form-encoded bodies with `name[]` for arrays, errors as
`{"errors": [{"message", "code", "moreInfo"}]}`. Nulab asks for one request at a time, a
second between bulk updates, and no request of a kind whose `X-RateLimit-Remaining` is 0
before its `X-RateLimit-Reset`; the client keeps all three itself.

Retries: a read is retried on 5xx and network errors with backoff. A create, comment or
update is not: it may have reached Backlog before the error, so `BacklogUnavailable`
goes back to the reconciler, which looks for its marker before calling again. A 429 is
always retried after Reset (Backlog did nothing), a 4xx never.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import aiohttp
import structlog

from jpixd.metrics import Metrics
from jpixd.model import JST
from jpixd.retry import Backoff

log = structlog.get_logger("jpixd.backlog")

Sleep = Callable[[float], Awaitable[None]]
Params = Sequence[tuple[str, str]]


class BacklogError(Exception):
    """Any failure of a Backlog call. Messages never hold the API key."""


class BacklogUnavailable(BacklogError):
    """Backlog could not be reached or failed (network, timeout, 5xx, 429 for too long).
    For a create or update, it may have been applied."""


class BacklogRejected(BacklogError):
    """Backlog refused the request (a 4xx other than 429); repeating it will not help."""

    def __init__(self, op: str, status: int, code: int | None, message: str) -> None:
        super().__init__(f"{op}: HTTP {status}"
                         + (f" (code {code})" if code is not None else "") + f": {message}")
        self.status = status
        self.code = code

    @property
    def not_found(self) -> bool:
        return self.status == 404


# The longest wait between two tries of one call (its retries are few: `retries`).
MAX_CALL_BACKOFF = 30.0

# Every call the client makes, by its metric label (`jpixd_backlog_requests_total{op}`).
OPS = ("add_comment", "close_issue", "create_issue", "find_issues", "get_comments", "get_issue",
       "issue_types", "list_issues", "priorities", "project", "recent_issues", "statuses")


class BacklogAuthRefused(BacklogError):
    """Backlog refused the API key (401/403, code 11). Not a BacklogRejected: it is not
    about one call or one case, so no per-case handler catches it; it stops the round."""


@dataclass
class RateLimit:
    remaining: int
    reset: float  # epoch seconds


@dataclass(frozen=True)
class Issue:
    id: int
    key: str
    status_id: int
    description: str = ""
    created: datetime | None = None

    @classmethod
    def from_json(cls, data: Any) -> Issue:
        try:
            return cls(id=int(data["id"]), key=str(data["issueKey"]),
                       status_id=int(data["status"]["id"]),
                       description=str(data.get("description") or ""),
                       created=datetime.fromisoformat(data["created"])
                       if data.get("created") else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise BacklogUnavailable(f"Backlog sent an issue jpixd cannot read: {exc!r}") \
                from None


def _errors(body: bytes) -> tuple[int | None, str]:
    """The first entry of Backlog's error document, or the start of whatever came."""
    try:
        data = json.loads(body)
        first = data["errors"][0]
        return (int(first["code"]) if first.get("code") is not None else None,
                str(first.get("message") or ""))
    except (ValueError, KeyError, IndexError, TypeError):
        return None, body[:200].decode("utf-8", "replace") or "(empty body)"


class BacklogClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str, *,
                 metrics: Metrics, timeout: float = 30.0, update_spacing: float = 1.0,
                 retries: int = 2, backoff: float = 0.5, max_rate_wait: float = 120.0,
                 wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Sleep = asyncio.sleep, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._session = session
        self._api = base_url.rstrip("/") + "/api/v2"
        self._key = api_key
        self._metrics = metrics
        metrics.backlog_series(OPS)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._spacing = update_spacing
        self._retries = retries
        self._backoff = backoff
        self._max_rate_wait = max_rate_wait
        self._wall = wall
        self._monotonic = monotonic
        self._sleep = sleep
        # Nulab: no concurrent requests from one user.
        self._lock = asyncio.Lock()
        self._limits: dict[str, RateLimit] = {}  # per category: read, update, search
        self._last_update: float | None = None

    @property
    def limits(self) -> dict[str, RateLimit]:
        return dict(self._limits)

    # -- the API calls jpixd makes ------------------------------------------------------

    async def project(self, key: str) -> Any:
        return await self._call("project", "GET", f"/projects/{quote(key, safe='')}")

    async def issue_types(self, project: str) -> Any:
        return await self._call("issue_types", "GET",
                                f"/projects/{quote(project, safe='')}/issueTypes")

    async def statuses(self, project: str) -> Any:
        return await self._call("statuses", "GET",
                                f"/projects/{quote(project, safe='')}/statuses")

    async def priorities(self) -> Any:
        return await self._call("priorities", "GET", "/priorities")

    async def create_issue(self, *, project_id: int, summary: str, issue_type_id: int,
                           priority_id: int, description: str,
                           notified_user_ids: Sequence[int] = ()) -> Issue:
        form = [("projectId", str(project_id)), ("summary", summary),
                ("issueTypeId", str(issue_type_id)), ("priorityId", str(priority_id)),
                ("description", description),
                *(("notifiedUserId[]", str(u)) for u in notified_user_ids)]
        return Issue.from_json(await self._call("create_issue", "POST", "/issues", form=form))

    async def find_issues(self, project_id: int, keyword: str) -> list[Issue]:
        """Issues of the project, in any status, whose text holds `keyword`."""
        data = await self._call("find_issues", "GET", "/issues", query=[
            ("projectId[]", str(project_id)), ("keyword", keyword), ("count", "100")])
        return [Issue.from_json(d) for d in _list(data)]

    async def created_since(self, project_id: int, since: datetime) -> AsyncIterator[Issue]:
        """The project's issues created since `since`, newest first, a page of 100 at a
        time: what a search index that has not caught up yet would miss."""
        day = (since.astimezone(JST) - timedelta(days=1)).date()  # the space's day, or so
        offset = 0
        while True:
            data = await self._call("recent_issues", "GET", "/issues", query=[
                ("projectId[]", str(project_id)), ("createdSince", day.isoformat()),
                ("sort", "created"), ("order", "desc"), ("count", "100"),
                ("offset", str(offset))])
            page = [Issue.from_json(d) for d in _list(data)]
            for issue in page:
                yield issue
            if len(page) < 100 or any(i.created is not None and i.created < since
                                      for i in page):
                return
            offset += 100

    async def issues_by_id(self, project_id: int, ids: Sequence[int]) -> list[Issue]:
        """Up to 100 issues at once; a deleted one is simply missing."""
        data = await self._call("list_issues", "GET", "/issues", query=[
            ("projectId[]", str(project_id)), *(("id[]", str(i)) for i in ids),
            ("count", "100")])
        return [Issue.from_json(d) for d in _list(data)]

    async def issue(self, id_or_key: int | str) -> Issue:
        return Issue.from_json(await self._call("get_issue", "GET",
                                                f"/issues/{quote(str(id_or_key), safe='')}"))

    async def add_comment(self, id_or_key: int | str, content: str) -> None:
        await self._call("add_comment", "POST",
                         f"/issues/{quote(str(id_or_key), safe='')}/comments",
                         form=[("content", content)])

    async def recent_comments(self, id_or_key: int | str) -> list[str]:
        data = await self._call("get_comments", "GET",
                                f"/issues/{quote(str(id_or_key), safe='')}/comments",
                                query=[("count", "100"), ("order", "desc")])
        return [str(c.get("content") or "") for c in _list(data) if isinstance(c, dict)]

    async def close_issue(self, id_or_key: int | str, *, status_id: int, comment: str) -> Issue:
        return Issue.from_json(await self._call(
            "close_issue", "PATCH", f"/issues/{quote(str(id_or_key), safe='')}",
            form=[("statusId", str(status_id)), ("comment", comment)]))

    # -- the conventions ----------------------------------------------------------------

    async def _call(self, op: str, method: str, path: str, *, query: Params = (),
                    form: Params | None = None) -> Any:
        category = ("search" if method == "GET" and path == "/issues"
                    else "read" if method == "GET" else "update")
        idempotent = method == "GET"
        async with self._lock:
            failures = throttled = 0
            while True:
                await self._wait_turn(category)
                try:
                    status, headers, body = await self._send(method, path, query, form)
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    self._metrics.backlog_requests.labels(op, "error").inc()
                    reason = f"{op}: {type(exc).__name__}: {self._clean(str(exc))}"
                    failures += 1
                    if idempotent and failures <= self._retries:
                        await self._sleep(self._delay(failures))
                        continue
                    raise BacklogUnavailable(reason) from None
                self._metrics.backlog_requests.labels(op, str(status)).inc()
                self._note_limit(category, headers)
                if status == 429:
                    throttled += 1
                    if throttled > self._retries:
                        raise BacklogUnavailable(f"{op}: still rate-limited (429) after "
                                                 f"{self._retries} waits")
                    wait = self._until_reset(category, default=60.0)
                    log.warning("Backlog rate limit reached; waiting", op=op,
                                seconds=round(wait, 1))
                    await self._sleep(wait)
                    continue
                if status >= 500:
                    code, message = _errors(body)
                    failures += 1
                    if idempotent and failures <= self._retries:
                        await self._sleep(self._delay(failures))
                        continue
                    raise BacklogUnavailable(f"{op}: HTTP {status}: {self._clean(message)}")
                if status >= 400:
                    code, message = _errors(body)
                    if status in (401, 403) or code == 11:
                        raise BacklogAuthRefused(f"{op}: HTTP {status}: "
                                                 f"{self._clean(message)}")
                    raise BacklogRejected(op, status, code, self._clean(message))
                try:
                    return json.loads(body) if body else None
                except ValueError:
                    raise BacklogUnavailable(f"{op}: HTTP {status} with a body that is not "
                                             "JSON") from None

    async def _send(self, method: str, path: str, query: Params,
                    form: Params | None) -> tuple[int, Any, bytes]:
        params = [("apiKey", self._key), *query]
        data, headers = None, {"Accept": "application/json"}
        if form is not None:
            data = urlencode(list(form)).encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        async with self._session.request(method, self._api + path, params=params, data=data,
                                         headers=headers, timeout=self._timeout,
                                         allow_redirects=False) as resp:
            return resp.status, resp.headers, await resp.read()

    async def _wait_turn(self, category: str) -> None:
        """Until the category's window has room, and a second after the last update."""
        lim = self._limits.get(category)
        if lim is not None and lim.remaining <= 0:
            wait = self._until_reset(category, default=0.0)
            if wait > 0:
                log.info("Backlog rate limit exhausted; waiting for its reset",
                         category=category, seconds=round(wait, 1))
                await self._sleep(wait)
        if category == "update":
            if self._last_update is not None:
                gap = self._last_update + self._spacing - self._monotonic()
                if gap > 0:
                    await self._sleep(gap)
            self._last_update = self._monotonic()

    def _note_limit(self, category: str, headers: Any) -> None:
        try:
            self._limits[category] = RateLimit(int(headers["X-RateLimit-Remaining"]),
                                               float(headers["X-RateLimit-Reset"]))
        except (KeyError, TypeError, ValueError):
            pass  # a response without the headers (a proxy's error page) says nothing

    def _until_reset(self, category: str, *, default: float) -> float:
        lim = self._limits.get(category)
        if lim is None:
            return default
        # A second more: Reset is whole seconds and clocks differ a little.
        return min(max(lim.reset - self._wall() + 1.0, 0.0), self._max_rate_wait)

    def _delay(self, failures: int) -> float:
        return Backoff(self._backoff, MAX_CALL_BACKOFF).delay(failures, self._rng)

    def _clean(self, text: str) -> str:
        """The key masked as sent and as a server may echo it (URL-encoded either way)."""
        if not self._key:
            return text
        for form in {self._key, quote(self._key, safe=""), quote_plus(self._key)}:
            text = text.replace(form, "***")
        return _API_KEY.sub(r"\1***", text)


_API_KEY = re.compile(r"(apiKey=)[^&\s'\"]+", re.IGNORECASE)


def _list(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise BacklogUnavailable(f"Backlog sent {type(data).__name__} where a list belongs")
    return data
