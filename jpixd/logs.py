"""Logging: structlog, one JSON object per line on stdout (journald), pretty on a TTY.

Only the entry point calls `configure()`. Stdlib loggers (aiohttp, botocore, asyncio)
are routed through the same processors so every line has the same shape, and a
redaction step makes sure no secret reaches a log line, whoever logged it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_SECRET_KEYS = re.compile(r"(api_?key|apikey|password|passwd|secret|token|authorization)",
                          re.IGNORECASE)
# apiKey=… in Backlog URLs, Bearer tokens in echoed headers.
_SECRET_IN_TEXT = re.compile(r"((?:apiKey|api_key|token|password)=)[^&\s'\"]+|(Bearer\s+)\S+",
                             re.IGNORECASE)


class Redactor:
    """Masks secret-looking keys and any known secret value anywhere in a log line."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, values: Iterable[str]) -> None:
        self._values.update(v for v in values if v and len(v) >= 4)

    def text(self, s: str) -> str:
        s = _SECRET_IN_TEXT.sub(lambda m: (m.group(1) or m.group(2)) + "***", s)
        for v in self._values:
            if v in s:
                s = s.replace(v, "***")
        return s

    def __call__(self, logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
        for key, value in list(event.items()):
            if _SECRET_KEYS.search(key) and value is not None and key != "token_file":
                event[key] = "***"
            elif isinstance(value, str):
                event[key] = self.text(value)
        return event


REDACTOR = Redactor()


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        REDACTOR,
    ]


def _drop_color_message(_: WrappedLogger, __: str, event: MutableMapping[str, Any]) -> Any:
    event.pop("color_message", None)
    return event


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    pretty = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Processor
    if pretty:
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), _drop_color_message],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([] if pretty else [structlog.processors.format_exc_info]),
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # botocore at INFO narrates every credential lookup; keep it to warnings.
    for noisy in ("botocore", "aiobotocore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
