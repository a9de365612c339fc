"""Logging: structlog, one JSON object per line on stdout (journald), pretty on a TTY.

Only the entry point calls `configure()`. Stdlib loggers (aiohttp, botocore, asyncio)
are routed through the same processors so every line has the same shape, and a
redaction step makes sure no secret reaches a log line, whoever logged it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_SECRET_KEYS = re.compile(r"(api_?key|apikey|password|passwd|secret|token|authorization)",
                          re.IGNORECASE)
# apiKey=… in Backlog URLs, Bearer tokens in echoed headers.
# `key=value` secrets, bearer tokens, and the password in a URL's userinfo
# (http://user:password@host/…, a feed behind basic auth).
_SECRET_IN_TEXT = re.compile(r"((?:apiKey|api_key|token|password)=)[^&\s'\"]+|(Bearer\s+)\S+"
                             r"|(://[^/\s:@]+:)[^/\s@]+(?=@)", re.IGNORECASE)


class Redactor:
    """Masks secret-looking keys and any known secret value anywhere in a log line."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, values: Iterable[str]) -> None:
        self._values.update(v for v in values if v and len(v) >= 4)

    def text(self, s: str) -> str:
        # The patterns need a '=', an '@' or a "Bearer": most text has none, and one
        # search for them is far cheaper than the patterns (this runs on every string of
        # every line: a line is written for each mail sent).
        if _HINT(s):
            s = _SECRET_IN_TEXT.sub(
                lambda m: (m.group(1) or m.group(2) or m.group(3)) + "***", s)
        for v in self._values:
            if v in s:
                s = s.replace(v, "***")
        return s

    def __call__(self, logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
        for key, value in event.items():  # values are replaced, keys stay: safe to iterate
            kind = _KEY_KINDS.get(key)
            if kind is None:
                kind = _key_kind(key)
                if len(_KEY_KINDS) < 4096:  # keys are the code's names; bounded all the same
                    _KEY_KINDS[key] = kind
            if kind is _SECRET:
                if value is not None and key != "token_file":
                    event[key] = "***"
            elif kind is _PLAIN and isinstance(value, str):
                event[key] = self.text(value)
        return event


_HINT = re.compile(r"[=@]|earer", re.IGNORECASE).search
# What a line's key holds: a secret (masked whole), text from anywhere (searched for
# secrets), or what the processors themselves wrote (left alone). Known keys are looked
# up, not matched again: a line has about ten of them.
_SECRET, _PLAIN, _OWN = "secret", "plain", "own"
_KEY_KINDS: dict[str, str] = {k: _OWN for k in ("timestamp", "level", "logger")}


def _key_kind(key: str) -> str:
    return _SECRET if _SECRET_KEYS.search(key) is not None else _PLAIN


REDACTOR = Redactor()


class Sink:
    """Where every log line goes, jpixd's own and stdlib's alike, one whole line per
    write under one lock, flushed (journald reads a pipe).

    structlog caches a logger on its first use; `configure()` repoints this sink (and
    refills the one processor list) instead of building new ones, so a cached logger
    follows a reconfiguration, as the tests' loggers must.
    """

    def __init__(self) -> None:
        self.stream: TextIO | None = None  # None: sys.stdout as it is at write time
        self.level = logging.INFO
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        out = self.stream or sys.stdout
        with self._lock:
            out.write(line + "\n")
            out.flush()

    def state(self) -> tuple[TextIO | None, int]:
        return self.stream, self.level

    def restore(self, state: tuple[TextIO | None, int]) -> None:
        self.stream, self.level = state


SINK = Sink()

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "warn": logging.WARNING, "error": logging.ERROR, "exception": logging.ERROR,
           "critical": logging.CRITICAL, "fatal": logging.CRITICAL}


def _level_gate(_: WrappedLogger, method: str, event: EventDict) -> EventDict:
    if _LEVELS.get(method, logging.INFO) < SINK.level:
        raise structlog.DropEvent
    return event


class _Line:
    """structlog's last step for jpixd's own loggers: the rendered line to the sink,
    without a detour through a stdlib LogRecord (a fifth of a send's cost, once)."""

    def __init__(self, name: str) -> None:
        self.name = name  # for add_logger_name

    def msg(self, message: str) -> None:
        SINK.write(message)

    debug = info = warning = warn = error = critical = fatal = exception = msg


def _line_factory(*args: Any) -> _Line:
    return _Line(str(args[0]) if args else "jpixd")


class _SinkHandler(logging.Handler):
    """Stdlib loggers (aiohttp, botocore, asyncio) into the same sink."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            SINK.write(self.format(record))
        except Exception:  # a logging failure must not take the caller down
            self.handleError(record)


# Times and dataclasses go through structlog's fallback (their repr), as with json.
_ORJSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | \
    orjson.OPT_PASSTHROUGH_DATACLASS


def json_line(event: Any, **kw: Any) -> str:
    """A log line's JSON: orjson's, a tenth of json's cost (a line for each mail sent);
    json's for what orjson refuses (an integer past 64 bits, a lone surrogate from a
    broken feed), escaped to ASCII so that a stdout in UTF-8 can take it: no line is
    lost."""
    try:
        return orjson.dumps(event, default=kw.get("default"), option=_ORJSON).decode()
    except orjson.JSONEncodeError:
        return json.dumps(event, ensure_ascii=True, **kw)


class bound:
    """Keys bound to every line logged within `with`, as structlog's bound_contextvars
    binds them, restored on the way out; a class with the variables' tokens instead of a
    generator, a third of its cost (the sender enters one for each mail)."""

    __slots__ = ("_kw", "_tokens")

    def __init__(self, **kw: Any) -> None:
        self._kw = kw

    def __enter__(self) -> None:
        self._tokens = structlog.contextvars.bind_contextvars(**self._kw)

    def __exit__(self, *exc: object) -> None:
        structlog.contextvars.reset_contextvars(**self._tokens)


class _Stamp:
    """A line's time in UTC as structlog's ISO stamper writes it ("…T19:20:25.123456Z"),
    the date and time of day formatted once a second: its `datetime.now().isoformat()`
    was a fifth of a line's cost, and a line is written for each mail sent."""

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self.clock = clock
        self._second: tuple[int, str] = (-1, "")  # replaced whole: safe across threads

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        second, ns = divmod(self.clock(), 1_000_000_000)
        seen, text = self._second
        if second != seen:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        event["timestamp"] = f"{text}.{ns // 1000:06d}Z"
        return event


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _Stamp(),
        structlog.processors.StackInfoRenderer(),
    ]


def _drop_color_message(_: WrappedLogger, __: str, event: MutableMapping[str, Any]) -> Any:
    event.pop("color_message", None)
    return event


# The one list every jpixd logger uses; configure() refills it in place (see Sink).
_PROCESSORS: list[Processor] = []


class FloodGate(logging.Filter):
    """At most `burst` records per logger and message in each `period`, for the loggers
    named; then one line saying how many were dropped (probe M6: 16 MB of tracebacks in
    15 s at the file-descriptor limit)."""

    def __init__(self, loggers: tuple[str, ...], burst: int = 5, period: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.loggers, self.burst, self.period, self.clock = loggers, burst, period, clock
        self.windows: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.loggers):
            return True
        key = (record.name, str(record.msg)[:80])
        now = self.clock()
        start, count = self.windows.get(key, (now, 0))
        if now - start > self.period:
            if count > self.burst:
                record.msg = f"{record.msg} ({count - self.burst} more like it were dropped)"
            start, count = now, 0
        if len(self.windows) > 1000:
            self.windows.clear()
        self.windows[key] = (start, count + 1)
        return bool(count < self.burst)


_FLOOD_GATE = FloodGate(("asyncio", "aiohttp.server", "aiohttp.web", "aiohttp.internal"))


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    pretty = fmt == "console" or (fmt == "auto" and (stream or sys.stdout).isatty())
    if pretty:
        # The console renderer draws tracebacks itself (development only).
        tail: list[Processor] = [REDACTOR, structlog.dev.ConsoleRenderer()]
    else:
        # Tracebacks become text before the redactor, so a secret in one is masked too.
        tail = [structlog.processors.format_exc_info, REDACTOR,
                structlog.processors.JSONRenderer(json_line)]
    SINK.stream, SINK.level = stream, logging.getLevelName(level.upper())
    _PROCESSORS[:] = [_level_gate, *_shared_processors(), *tail]
    structlog.configure(
        processors=_PROCESSORS,
        logger_factory=_line_factory,
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=True,
    )
    handler = _SinkHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), _drop_color_message],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # botocore at INFO narrates every credential lookup; keep it to warnings.
    for noisy in ("botocore", "aiobotocore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # What strangers can provoke (accept() failing at the descriptor limit, malformed
    # requests) is logged a few times a minute, not once per attempt.
    handler.addFilter(_FLOOD_GATE)
