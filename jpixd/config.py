"""Typed configuration: frozen dataclasses and one loader.

The loader takes a plain mapping (parsed TOML) and either returns a `Config` or raises
`ConfigError` listing *every* problem at once, each named by its key path
(``sources[2].interval: "6O s" is not a duration``). Nothing else in the program reads
TOML, the environment or secret files: they are all resolved here, so the rest of the
code gets one immutable object.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from datetime import datetime, timedelta
from email.utils import parseaddr
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_type_hints
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

T = TypeVar("T")
if TYPE_CHECKING:
    from _typeshed import DataclassInstance
D = TypeVar("D", bound="DataclassInstance")  # a config section's dataclass

SOURCE_KINDS = ("rss", "atom", "ntt-east", "ntt-west", "json")
CARRIERS = ("east", "west")
NOTICE_KINDS = ("construction", "failure")
CHARSETS = ("iso-2022-jp", "utf-8")
TRANSPORTS = ("ses", "smtp", "file")

# SES starts reviewing an account at these rates; the guard must trip below them.
SES_REVIEW_BOUNCE_RATE = 0.05
SES_REVIEW_COMPLAINT_RATE = 0.001


# How a reload (SIGHUP, jpixd.reload) takes a setting, declared with the setting: "live"
# (at once: a section its loops apply, `Loop.apply`) or "restart" (reported, and kept as
# it runs until the next start; `group` names it in the report). Unmarked: read afresh
# wherever it is used.
#
# The same declaration says how the loader reads the key (`setting`'s checks): its type
# comes from the annotation, its default from the field, and `_walk` reads every field
# so declared, with the error messages and key paths of `_Section`'s readers.
def setting(default: Any, *, reload: str | None = None, group: str | None = None,
            min: float | None = None, max: float | None = None,
            exclusive_min: bool = False, choices: tuple[str, ...] | None = None,
            url: bool = False, positive: bool = True, custom: bool = False) -> Any:
    """A setting with its checks: `min`/`max` (a number's range), `exclusive_min`,
    `choices` (a string's or a list's allowed values), `url` (an http(s) URL),
    `positive` (a duration above zero), `custom` (read by the section's own code, not
    by `_walk`)."""
    meta: dict[str, Any] = {"min": min, "max": max, "exclusive_min": exclusive_min,
                            "choices": choices, "url": url, "positive": positive,
                            "custom": custom}
    if reload is not None:
        meta.update(reload=reload, group=group)
    return field(default=default, metadata=meta)


def restart(default: Any, group: str | None = None, **checks: Any) -> Any:
    return setting(default, reload="restart", group=group, **checks)


def live(default: Any, **checks: Any) -> Any:
    return setting(default, reload="live", **checks)


def defaults(cls: type) -> Callable[[str], Any]:
    """A config dataclass's own default for each key: the loader takes it from there, so a
    default is written once and cannot drift between the dataclass and the loader."""
    by_name = {f.name: f for f in fields(cls)}

    def default(name: str) -> Any:
        f = by_name[name]
        if f.default is not MISSING:
            return f.default
        if f.default_factory is not MISSING:
            return f.default_factory()
        raise KeyError(f"{cls.__name__}.{name} has no default")
    return default


class ConfigError(Exception):
    """One or more configuration errors, each prefixed by its key path."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


# --------------------------------------------------------------------------- values


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> timedelta:
    """Parse "30s", "5m", "24h", "7d", "1h30m", "250ms"; raise ValueError otherwise."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    pos = 0
    total = 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise ValueError(f"{text!r} is not a duration")
    return timedelta(seconds=total)


@dataclass(frozen=True)
class Secret:
    """A secret and where it came from. `repr` never shows the value; equality does
    compare it, so that a new token or key behind the same file or parameter is a change
    (what a reload has to see)."""

    origin: str  # "file:/path", "env:NAME", "ssm:/path" or "generated:/path"
    value: str | None = field(default=None, repr=False)

    @property
    def needs_ssm(self) -> bool:
        return self.origin.startswith("ssm:") and self.value is None

    def get(self) -> str:
        if self.value is None:
            raise RuntimeError(f"secret {self.origin} has not been resolved")
        return self.value


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _walk(cls: type[D], s: _Section, **given: Any) -> D:
    """A section read as its dataclass declares it: each field's key by the field's type
    (its annotation), with its default and its checks (`setting`). `given`: the fields
    the section's own code has read (marked `custom`, or needing more than a check)."""
    hints, default = _hints(cls), defaults(cls)
    values = dict(given)
    for f in fields(cls):
        if f.name in given or f.metadata.get("custom"):
            continue
        values[f.name] = _read(s, f.name, hints[f.name], default(f.name), f.metadata)
    return cls(**values)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """A dataclass's field types, its annotations evaluated once."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _read(s: _Section, name: str, kind: Any, default: Any, m: Mapping[str, Any]) -> Any:
    """One key, read by the reader its declared type calls for."""
    if kind is bool:
        return s.flag(name, default)
    if kind is int:
        return s.integer(name, default, min_value=m.get("min"), max_value=m.get("max"))
    if kind is float:
        return s.number(name, default, min_value=m.get("min"), max_value=m.get("max"),
                        exclusive_min=bool(m.get("exclusive_min")))
    if kind is timedelta:
        return s.duration(name, default, positive=m.get("positive", True))
    if kind == tuple[str, ...]:
        return s.str_list(name, default, choices=m.get("choices"))
    if kind == Path | None:
        return s.path_value(name, default)
    if kind in (str, str | None):
        if m.get("url"):
            return s.url(name)
        return s.text(name, default, choices=m.get("choices"))
    raise TypeError(f"no reader for {name}: {kind}")  # a declaration this loader lacks


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class HttpConfig:
    listen: Listen = restart(Listen("127.0.0.1", 8080), "http", custom=True)
    # The public pages (self-service, one-click unsubscribe, notice board, feeds) and
    # nothing else: the only listener that sits behind the ALB. None: no public pages.
    public_listen: Listen | None = restart(None, "http", custom=True)
    admin_token: Secret | None = live(None, custom=True)
    # Embedded default only: create a random token in state_dir if none is configured.
    generate_admin_token: bool = False
    # Load shedding (jpixd.web.shed): a request head must arrive within header_timeout,
    # its body within body_timeout; at most max_connections are open at once.
    header_timeout: timedelta = restart(timedelta(seconds=10), "http")
    body_timeout: timedelta = restart(timedelta(seconds=30), "http")
    max_connections: int = restart(256, "http", min=4)
    # The public listener's share per client (an IPv4 address, an IPv6 /64; behind the
    # ALB the X-Forwarded-For client): connections open and requests in progress.
    max_connections_per_client: int = setting(16, min=1)


@dataclass(frozen=True)
class WebConfig:
    """The public pages and the links in mail (jpixd.web.public, jpixd.web.links)."""

    # Where subscribers reach the public listener ("https://notice.example.jp"): links in
    # mail are built on it. None: no links (List-Unsubscribe falls back to mail).
    base_url: str | None = setting(None, custom=True)
    # Keys that sign links (first signs, all verify): adding a key in front keeps every
    # link already mailed working. Each Secret may hold several keys, one per line.
    secret_keys: tuple[Secret, ...] = setting((), custom=True)
    generate_secret_keys: bool = False  # embedded default only: kept in state_dir
    # Proxies (the ALB's subnets) whose X-Forwarded-For / -Proto are believed.
    trusted_proxies: tuple[str, ...] = ()
    confirm_ttl: timedelta = timedelta(hours=48)
    manage_ttl: timedelta = timedelta(days=90)
    # Abuse limits: form posts per client (an IPv4 address, or an IPv6 network of
    # `ipv6_client_prefix` bits: one customer's /64 is one client), and self-service mails
    # (sign-up confirmations and manage links) per mailbox and in all, each per hour;
    # past `mail_bounce_limit` of their bounces and complaints within the guard window,
    # none at all until the window moves on (jpixd.selfmail).
    # During the shadow weeks (`run --shadow`), sign-up and settings pages say plainly
    # that this is a rehearsal and send visitors here (the old system's pages).
    rehearsal_url: str | None = setting(None, url=True)
    # The old system's unsubscribe links, in mails it sent before the switch: their path,
    # the query parameter and whether it carries the address or the old system's id
    # (`legacy_id`, mapped at import). After the switch they offer the same unsubscribe.
    legacy_unsubscribe_path: str | None = setting(None, custom=True)
    legacy_unsubscribe_param: str = "id"
    legacy_unsubscribe_by: str = setting("email", choices=("email", "legacy_id"))
    posts_per_client_hour: int = setting(30, min=1)
    ipv6_client_prefix: int = setting(64, min=32, max=128)
    mails_per_address_hour: int = setting(3, min=1)
    mails_per_hour: int = setting(100, min=1)
    mail_bounce_limit: int = setting(10, min=1)


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    url: str
    carrier: str
    interval: timedelta = timedelta(seconds=60)
    timeout: timedelta = timedelta(seconds=20)
    enabled: bool = True
    send_on_first_poll: bool = False
    max_body_bytes: int = setting(5 * 1024 * 1024, min=1024)
    # Politeness for sources that follow links to detail pages (ntt-west).
    detail_delay: timedelta = setting(timedelta(seconds=1), positive=False)
    # Hosts besides the source's own that detail links and redirects may go to.
    detail_hosts: tuple[str, ...] = ()
    redirect_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class SesConfig:
    region: str = restart("ap-northeast-1", "mail.transport")
    endpoint_url: str | None = restart(None, "mail.transport", url=True)
    configuration_set: str | None = restart(None, "mail.transport")
    max_send_rate: float | Literal["auto"] = setting("auto", custom=True)
    rate_safety: float = setting(0.9, min=0.0, max=1.0, exclusive_min=True)
    quota_refresh: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class SmtpConfig:
    host: str | None = None
    port: int = setting(587, min=1, max=65535)
    starttls: bool = True
    tls: bool = False  # implicit TLS (465/2465)
    username: str | None = None
    password: Secret | None = setting(None, custom=True)
    pool_size: int = setting(4, min=1, max=64)
    timeout: timedelta = timedelta(seconds=30)


@dataclass(frozen=True)
class FileTransportConfig:
    dir: Path = Path("var/outbox")


@dataclass(frozen=True)
class MailConfig:
    # `from` (and `from_name`): read together, "NOC <noc@…>" or the address alone.
    from_addr: str = setting("jpixd@localhost", custom=True)
    from_name: str | None = setting(None, custom=True)
    reply_to: str | None = setting(None, custom=True)  # an address
    # Who a reader asks (the operator's desk, mail, telephone): one line at the foot of
    # every mail, and of the public pages.
    contact: str | None = setting(None, custom=True)
    charset: str = setting("iso-2022-jp", choices=CHARSETS)
    transport: str = restart("file", "mail.transport", choices=TRANSPORTS)
    # https, http or mailto: read by the section's code.
    list_unsubscribe: str | None = setting(None, custom=True)
    templates_dir: Path | None = None
    ses: SesConfig = setting(SesConfig(), custom=True)
    smtp: SmtpConfig = restart(SmtpConfig(), "mail.transport", custom=True)
    file: FileTransportConfig = restart(FileTransportConfig(), "mail.transport", custom=True)


@dataclass(frozen=True)
class SendingConfig:
    concurrency: int = setting(8, min=1, max=256)
    max_attempts: int = setting(8, min=1, max=100)
    backoff: timedelta = timedelta(seconds=30)
    backoff_max: timedelta = timedelta(hours=1)
    burst: int | None = setting(None, custom=True)
    reminder_before: tuple[timedelta, ...] = setting((timedelta(hours=24),), custom=True)
    quiet_hours_respected_for: tuple[str, ...] = setting(("construction",),
                                                         choices=NOTICE_KINDS)
    claim_batch: int = setting(100, min=1, max=10_000)


@dataclass(frozen=True)
class ChannelsConfig:
    """Channels beyond mail (issue 26): where their URLs may point and how their messages
    are retried. A subscriber's URL is typed by strangers (the manage page), so only
    https to public addresses, unless the operator says otherwise here."""

    allow_http: bool = False
    # Networks a channel may reach although they are not public (an in-house receiver).
    allowed_networks: tuple[str, ...] = ()
    # Messages in flight at once, across every channel.
    concurrency: int = setting(8, min=1, max=256)
    max_attempts: int = setting(8, min=1, max=100)
    backoff: timedelta = timedelta(seconds=30)
    backoff_max: timedelta = timedelta(hours=1)
    # 404 or 410 this many times in a row: the channel is paused (the webhook's bounce).
    pause_after_gone: int = setting(3, min=1, max=100)
    # Messages a second to one host (Slack takes one a second per webhook, always).
    per_host_rate: float = setting(5.0, min=0.0, exclusive_min=True)


@dataclass(frozen=True)
class BouncesConfig:
    queue_url: str | None = restart(None, "bounces.queue", url=True)
    region: str = restart("ap-northeast-1", "bounces.queue")
    endpoint_url: str | None = restart(None, "bounces.queue", url=True)
    expected_topic_arns: tuple[str, ...] = ()
    wait_time: timedelta = restart(timedelta(seconds=20), "bounces.queue")  # SQS long poll
    visibility_timeout: timedelta = restart(timedelta(seconds=30), "bounces.queue")
    soft_bounce_limit: int = setting(3, min=1)
    soft_bounce_window: timedelta = timedelta(days=7)
    guard_window: timedelta = timedelta(hours=24)
    guard_min_volume: int = setting(200, min=1)
    pause_bounce_rate: float = setting(0.04, min=0.0, exclusive_min=True)
    warn_bounce_rate: float = setting(0.025, min=0.0, exclusive_min=True)
    pause_complaint_rate: float = setting(0.0008, min=0.0, exclusive_min=True)
    warn_complaint_rate: float = setting(0.0005, min=0.0, exclusive_min=True)


@dataclass(frozen=True)
class ClusterConfig:
    """SPEC §3 `[cluster]`: how long a claimed delivery is its sender's (renewed every
    third of it while the send runs); past it, any sender sends it again."""

    lease: timedelta = timedelta(minutes=2)
    # PostgreSQL only: a leader silent this long has lost its roles to another host.
    leader_timeout: timedelta = timedelta(seconds=30)


ARCHIVE_SINKS = ("firehose", "file")


@dataclass(frozen=True)
class ArchiveConfig:
    """The event archive (jpixd/archive.py): every delivery state change, mail event,
    suppression, pause/resume and Backlog action as a JSON line, in commit order."""

    kind: str = setting("firehose", choices=("firehose", "file"))  # SPEC §3
    stream: str | None = None  # the Firehose delivery stream
    region: str = "ap-northeast-1"
    endpoint_url: str | None = setting(None, url=True)  # tests (moto)
    dir: Path | None = None  # file: one file per UTC hour
    interval: timedelta = timedelta(seconds=1)
    # Records per PutRecordBatch (Firehose's limit).
    batch_size: int = setting(500, min=1, max=500)
    max_file_bytes: int = setting(64 * 1024 * 1024, min=1024)
    keep_files: int = setting(24 * 14, min=1)  # the file sink's rotated files kept


@dataclass(frozen=True)
class BackupConfig:
    """`jpixd backup DEST` / `jpixd restore SRC` (jpixd/backup.py): where S3 is, and how
    many backups a destination keeps."""

    region: str = "ap-northeast-1"
    endpoint_url: str | None = setting(None, url=True)  # tests (moto)
    # The newest this many backups in a folder or S3 prefix; older go.
    keep: int = setting(14, min=1)


@dataclass(frozen=True)
class BacklogConfig:
    base_url: str
    api_key: Secret
    project_key: str
    issue_type: str
    priority: str = setting("Normal", custom=True)  # a name or an id: taken as written
    close_status_id: int = setting(4, min=1)
    auto_close_after: timedelta = timedelta(hours=24)
    reconcile_interval: timedelta = timedelta(seconds=60)
    notified_user_ids: tuple[int, ...] = setting((), custom=True)
    timeout: timedelta = timedelta(seconds=30)


@dataclass(frozen=True)
class RetentionConfig:
    """How long history is kept (jpixd.store.retention): a year, and 90 days of the
    quarantine, unless the operator says otherwise."""

    deliveries: timedelta = timedelta(days=365)  # finished ones
    events: timedelta = timedelta(days=365)  # raw SES notifications
    revisions: timedelta = timedelta(days=365)  # superseded notice revisions
    quarantine: timedelta = timedelta(days=90)
    tickets: timedelta = timedelta(days=365)  # ended Backlog cases
    pending_subscribers: timedelta = timedelta(days=7)  # sign-ups never confirmed

    def cutoffs(self, now: datetime) -> dict[str, datetime]:
        cut = {name: now - getattr(self, name) for name in RETENTION_KEYS}
        # Channel messages' rows are kept as long as deliveries (self-service mail's are
        # deliveries); logged-out console sessions only until they would have expired.
        return {**cut, "channel_messages": cut["deliveries"], "console_logouts": now}


RETENTION_KEYS = ("deliveries", "events", "revisions", "quarantine", "tickets",
                  "pending_subscribers")


@dataclass(frozen=True)
class SupervisorConfig:
    max_restarts: int = setting(5, min=0)
    restart_window: timedelta = timedelta(minutes=5)
    restart_backoff: timedelta = timedelta(seconds=1)
    restart_backoff_max: timedelta = timedelta(seconds=30)


@dataclass(frozen=True)
class SsmConfig:
    """Where `ssm:/path` secrets are read from (AWS SSM Parameter Store, decrypted)."""

    region: str = "ap-northeast-1"
    endpoint_url: str | None = setting(None, url=True)


@dataclass(frozen=True)
class LoggingConfig:
    level: str = setting("info", choices=("debug", "info", "warning", "error"))
    # "auto" (pretty on a TTY), "json", "console"
    format: str = setting("auto", choices=("auto", "json", "console"))


@dataclass(frozen=True)
class Config:
    state_dir: Path = restart(Path("var"))
    timezone: str = live("Asia/Tokyo")
    shutdown_timeout: timedelta = timedelta(seconds=30)
    database_url: str | None = restart(None)  # None: sqlite:///{state_dir}/jpixd.sqlite3
    # PostgreSQL's password, when the URL has none (file, env or ssm:): the pool keeps
    # the one it opened with.
    database_password: Secret | None = restart(None)
    http: HttpConfig = HttpConfig()
    web: WebConfig = live(WebConfig())
    sources: tuple[SourceConfig, ...] = live(())
    mail: MailConfig = live(MailConfig())
    sending: SendingConfig = live(SendingConfig())
    bounces: BouncesConfig = live(BouncesConfig())
    channels: ChannelsConfig = live(ChannelsConfig())
    backlog: BacklogConfig | None = live(None)
    archive: ArchiveConfig | None = restart(None)
    backup: BackupConfig = BackupConfig()
    cluster: ClusterConfig = restart(ClusterConfig())
    supervisor: SupervisorConfig = restart(SupervisorConfig())
    retention: RetentionConfig = live(RetentionConfig())
    ssm: SsmConfig = restart(SsmConfig())
    logging: LoggingConfig = live(LoggingConfig())
    # Embedded default only: subscribers imported into an empty database at start-up.
    sample_subscribers: Path | None = None
    # Where this config came from (for relative paths and messages).
    origin: str = "<embedded default>"

    @property
    def postgres(self) -> bool:
        """`database_url = "postgresql://…"`: the several-hosts backend (issue 16)."""
        return bool(self.database_url) and str(self.database_url).startswith(
            ("postgresql://", "postgres://"))

    @property
    def database_path(self) -> Path:
        """`database_url = "sqlite:///abs/path"` when given, else state_dir/jpixd.sqlite3."""
        if self.database_url and self.database_url.startswith("sqlite:"):
            raw = unquote(urlsplit(self.database_url).path)
            if raw.startswith("/"):  # sqlite:///var/… (SPEC §3) and sqlite:////var/… alike
                return Path("/" + raw.lstrip("/"))
            return self.state_dir / raw
        return self.state_dir / "jpixd.sqlite3"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


# --------------------------------------------------------------------------- reader


_MISSING: Any = object()


class _Section:
    """A view on one table of the TOML document that records errors by key path."""

    def __init__(self, data: Mapping[str, Any], path: str, errors: list[str],
                 env: Mapping[str, str], base_dir: Path) -> None:
        self.data = data
        self.path = path
        self.errors = errors
        self.env = env
        self.base_dir = base_dir
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> None:
        self.errors.append(f"{self.key(name)}: {message}")

    def raw(self, name: str) -> Any:
        self.seen.add(name)
        return self.data.get(name, _MISSING)

    def _typed(self, name: str, default: T, check: Callable[[Any], T], required: bool) -> T:
        value = self.raw(name)
        if value is _MISSING:
            if required:
                self.error(name, "is required")
            return default
        try:
            return check(value)
        except (TypeError, ValueError) as exc:
            self.error(name, str(exc))
            return default

    def text(self, name: str, default: Any = None, *, required: bool = False,
            choices: tuple[str, ...] | None = None) -> Any:
        def check(v: Any) -> str:
            if not isinstance(v, str):
                raise TypeError(f"{v!r} is not a string")
            if choices is not None and v not in choices:
                raise ValueError(f"{v!r} is not one of {', '.join(choices)}")
            if required and not v.strip():
                raise ValueError("must not be empty")
            return v
        return self._typed(name, default, check, required)

    def integer(self, name: str, default: int, *, min_value: int | None = None,
            max_value: int | None = None) -> int:
        def check(v: Any) -> int:
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{v!r} is not an integer")
            if min_value is not None and v < min_value:
                raise ValueError(f"{v} is below the minimum {min_value}")
            if max_value is not None and v > max_value:
                raise ValueError(f"{v} is above the maximum {max_value}")
            return int(v)
        return self._typed(name, default, check, False)

    def number(self, name: str, default: float, *, min_value: float | None = None,
              max_value: float | None = None, exclusive_min: bool = False) -> float:
        def check(v: Any) -> float:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise TypeError(f"{v!r} is not a number")
            f = float(v)
            if min_value is not None and (f < min_value or (exclusive_min and f == min_value)):
                op = "above" if exclusive_min else "at least"
                raise ValueError(f"{v} must be {op} {min_value}")
            if max_value is not None and f > max_value:
                raise ValueError(f"{v} must be at most {max_value}")
            return f
        return self._typed(name, default, check, False)

    def flag(self, name: str, default: bool) -> bool:
        def check(v: Any) -> bool:
            if not isinstance(v, bool):
                raise TypeError(f"{v!r} is not true or false")
            return v
        return self._typed(name, default, check, False)

    def duration(self, name: str, default: timedelta, *, positive: bool = True) -> timedelta:
        def check(v: Any) -> timedelta:
            if not isinstance(v, str):
                raise TypeError(f"{v!r} is not a duration (write it as a string, e.g. \"30s\")")
            try:
                d = parse_duration(v)
            except ValueError:
                raise ValueError(f"{v!r} is not a duration "
                                 "(e.g. \"30s\", \"5m\", \"24h\", \"7d\")") from None
            if positive and d <= timedelta(0):
                raise ValueError(f"{v!r} must be longer than zero")
            return d
        return self._typed(name, default, check, False)

    def str_list(self, name: str, default: tuple[str, ...],
                 choices: tuple[str, ...] | None = None) -> tuple[str, ...]:
        def check(v: Any) -> tuple[str, ...]:
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise TypeError(f"{v!r} is not a list of strings")
            if choices is not None:
                bad = [x for x in v if x not in choices]
                if bad:
                    raise ValueError(f"{bad[0]!r} is not one of {', '.join(choices)}")
            return tuple(v)
        return self._typed(name, default, check, False)

    def path_value(self, name: str, default: Path | None) -> Path | None:
        text = self.text(name, None)
        if text is None:
            return default
        p = Path(text)
        return p if p.is_absolute() else self.base_dir / p

    def url(self, name: str, *, required: bool = False,
            schemes: tuple[str, ...] = ("http", "https")) -> str | None:
        text: str | None = self.text(name, None, required=required)
        if text is None:
            return None
        parts = urlsplit(text)
        if parts.scheme not in schemes:
            self.error(name, f"{text!r} must be a URL with scheme {' or '.join(schemes)}")
            return None
        if parts.scheme != "file" and not parts.netloc:
            self.error(name, f"{text!r} has no host")
            return None
        return text

    def email(self, name: str, default: str | None = None, *, required: bool = False) -> Any:
        text = self.text(name, default, required=required)
        if text is not None and not _EMAIL.fullmatch(text):
            self.error(name, f"{text!r} is not an email address")
        return text

    def secret(self, name: str, env_var: str | None) -> Secret | None:
        """A secret: `<name>_file` (a path), `<name>` as "ssm:/path" or "env:VAR", or `env_var`.

        A literal secret written into the file is refused: config files get copied,
        committed and pasted into tickets.
        """
        file_key = f"{name}_file"
        file_value = self.text(file_key, None)
        inline = self.text(name, None)
        if file_value is not None and inline is not None:
            self.error(name, f"set either {name} or {file_key}, not both")
            return None
        if file_value is not None:
            if file_value.startswith("ssm:"):
                return self._ssm(file_key, file_value)
            path = Path(file_value)
            path = path if path.is_absolute() else self.base_dir / path
            try:
                text = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                self.error(file_key, f"cannot read {str(path)!r}: {exc.strerror or exc}")
                return None
            if not text:
                self.error(file_key, f"{str(path)!r} is empty")
                return None
            return Secret(f"file:{path}", text)
        if inline is not None:
            if inline.startswith("ssm:"):
                return self._ssm(name, inline)
            if inline.startswith("env:"):
                return self._env(name, inline[4:])
            self.error(name, f"secrets are not written in the config file; use {file_key}, "
                             f"\"ssm:/path\" or \"env:VAR\"")
            return None
        if env_var is not None and self.env.get(env_var):
            return Secret(f"env:{env_var}", self.env[env_var])
        return None

    def _ssm(self, key: str, ref: str) -> Secret | None:
        if not ref[4:].startswith("/") or len(ref) < 6:
            self.error(key, f"{ref!r} is not an SSM parameter reference (\"ssm:/path/name\")")
            return None
        return Secret(ref)

    def _env(self, key: str, var: str) -> Secret | None:
        value = self.env.get(var)
        if not value:
            self.error(key, f"environment variable {var} is not set")
            return None
        return Secret(f"env:{var}", value)

    def section(self, name: str) -> _Section:
        value = self.raw(name)
        if value is _MISSING:
            value = {}
        elif not isinstance(value, Mapping):
            self.error(name, "must be a table")
            value = {}
        return _Section(value, self.key(name), self.errors, self.env, self.base_dir)

    def has(self, name: str) -> bool:
        return name in self.data

    def finish(self) -> None:
        """Report keys nobody asked for: a typo must not silently fall back to a default."""
        for name in self.data:
            if name not in self.seen:
                self.error(name, "unknown key")


_EMAIL = re.compile(r"[^@\s<>\"(),;:]+@[^@\s<>\"(),;:]+\.[^@\s<>\"(),;:.]+|[^@\s]+@localhost")


# --------------------------------------------------------------------------- sections


def _listen(s: _Section, key: str = "listen", default: str | None = "127.0.0.1:8080"
            ) -> Listen | None:
    text = s.text(key, default)
    if text is None:
        return None
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", text or "")
    if not m:
        s.error(key, f"{text!r} is not host:port")
        return Listen("127.0.0.1", 8080)
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        s.error(key, f"port {port} is above 65535")
    return Listen(host, port)


def _http(s: _Section) -> HttpConfig:
    listen = _listen(s)
    assert listen is not None
    public = _listen(s, "public_listen", None)
    if public is not None and public == listen and public.port != 0:
        s.error("public_listen", "must differ from listen: the public pages and the "
                "operator side are served apart")
    before = len(s.errors)
    cfg = _walk(HttpConfig, s, listen=listen, public_listen=public,
                admin_token=s.secret("admin_token", "JPIXD_ADMIN_TOKEN"))
    # A refused token has been reported already; "no token" would say it twice.
    if cfg.admin_token is None and not cfg.generate_admin_token and len(s.errors) == before:
        s.error("admin_token_file", "no admin token: set admin_token_file, "
                "admin_token = \"ssm:/path\" or the environment variable JPIXD_ADMIN_TOKEN")
    s.finish()
    return cfg


MIN_WEB_KEY = 32


def web_keys(secrets: Sequence[Secret]) -> list[str]:
    """The keys `secret_keys` names, in order (the first signs): each of its secrets
    holds one key or several, one per line (or separated by commas or spaces)."""
    return [k for secret in secrets for k in re.split(r"[\s,]+", secret.get()) if k]


def _secret_list(s: _Section, name: str, env_var: str) -> tuple[Secret, ...]:
    """`name` as a list of references (["ssm:/a", "env:B"]), or as one secret the usual
    ways (`name_file`, "ssm:/path", "env:VAR", or `env_var`)."""
    raw = s.data.get(name)
    if not isinstance(raw, list):
        one = s.secret(name, env_var)
        return (one,) if one is not None else ()
    s.raw(name)
    out: list[Secret] = []
    for i, item in enumerate(raw):
        key = f"{name}[{i}]"
        if isinstance(item, str) and item.startswith("ssm:"):
            got = s._ssm(key, item)
        elif isinstance(item, str) and item.startswith("env:"):
            got = s._env(key, item[4:])
        else:
            s.error(key, "each key is a reference, \"ssm:/path\" or \"env:VAR\" (secrets "
                    "are not written in the config file)")
            got = None
        if got is not None:
            out.append(got)
    if s.has(f"{name}_file"):
        s.error(name, f"set either {name} or {name}_file, not both")
    return tuple(out)


# Paths the public listener serves itself: a legacy link may not take one over.
_OUR_PATHS = ("/s", "/unsubscribe", "/notices", "/static")


def _legacy_path(s: _Section) -> str | None:
    path = s.text("legacy_unsubscribe_path", None)
    if path is None:
        return None
    if not path.startswith("/") or "?" in path or "#" in path or path == "/" or \
            any(path == p or path.startswith(p + "/") for p in _OUR_PATHS):
        s.error("legacy_unsubscribe_path", f"{path!r} must be a path of the old system's "
                "(\"/cgi-bin/unsubscribe.cgi\"), not one of jpixd's pages")
        return None
    return str(path)


def _web(s: _Section, http: HttpConfig) -> WebConfig:
    base_url = s.url("base_url")
    if base_url is not None:
        base_url = base_url.rstrip("/")
        if urlsplit(base_url).query or urlsplit(base_url).fragment:
            s.error("base_url", f"{base_url!r} must not have a query or fragment")
    keys = _secret_list(s, "secret_keys", "JPIXD_WEB_SECRET_KEYS")
    if keys and all(k.value is not None for k in keys):
        short = [i for i, k in enumerate(web_keys(keys)) if len(k) < MIN_WEB_KEY]
        if short:
            s.error("secret_keys", f"key {short[0] + 1} is shorter than {MIN_WEB_KEY} "
                    "characters (make one with `openssl rand -hex 32`)")
    cfg = _walk(WebConfig, s, base_url=base_url, secret_keys=keys,
                legacy_unsubscribe_path=_legacy_path(s))
    for p in cfg.trusted_proxies:
        try:
            ipaddress.ip_network(p, strict=False)
        except ValueError:
            s.error("trusted_proxies", f"{p!r} is not an address or network (\"10.0.0.0/16\")")
    if not keys and not cfg.generate_secret_keys and (base_url or http.public_listen):
        s.error("secret_keys", "links in mail and the public pages need keys: set "
                "secret_keys_file, secret_keys = \"ssm:/path\" or JPIXD_WEB_SECRET_KEYS")
    s.finish()
    return cfg


def _source(s: _Section, names: set[str]) -> SourceConfig | None:
    d = defaults(SourceConfig)
    name = s.text("name", "", required=True)
    if name and not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", name):
        s.error("name", f"{name!r} must be lower-case letters, digits, '-' or '_'")
    if name in names:
        s.error("name", f"{name!r} is used by another source")
    names.add(name)
    kind = s.text("kind", None, required=True, choices=SOURCE_KINDS)
    url = s.url("url", required=True, schemes=("http", "https", "file"))
    implied = {"ntt-east": "east", "ntt-west": "west"}.get(kind or "")
    carrier = s.text("carrier", implied, choices=CARRIERS)
    if carrier is None and kind is not None and not s.has("carrier"):
        s.error("carrier", f"is required for kind {kind!r} (\"east\" or \"west\")")
    elif implied is not None and carrier != implied:
        s.error("carrier", f"{carrier!r} contradicts kind {kind!r}")
    interval = s.duration("interval", d("interval"))
    # The default follows a short interval: `interval = "5s"` alone is a valid source.
    timeout = s.duration("timeout", min(d("timeout"), interval))
    if timeout > interval:
        s.error("timeout", "must not be longer than interval")
    src = _walk(SourceConfig, s, name=name, kind=kind or "rss", url=url or "",
                carrier=carrier or "east", interval=interval, timeout=timeout)
    s.finish()
    return src


def _sources(root: _Section) -> tuple[SourceConfig, ...]:
    raw = root.raw("sources")
    if raw is _MISSING:
        return ()
    if not isinstance(raw, list):
        root.error("sources", "must be an array of tables ([[sources]])")
        return ()
    names: set[str] = set()
    out: list[SourceConfig] = []
    for i, item in enumerate(raw):
        path = f"sources[{i}]"
        if not isinstance(item, Mapping):
            root.errors.append(f"{path}: must be a table")
            continue
        src = _source(_Section(item, path, root.errors, root.env, root.base_dir), names)
        if src is not None:
            out.append(src)
    return tuple(out)


def _ses(s: _Section) -> SesConfig:
    rate_raw = s.raw("max_send_rate")
    rate: float | Literal["auto"] = "auto"
    if rate_raw is not _MISSING and rate_raw != "auto":
        if isinstance(rate_raw, bool) or not isinstance(rate_raw, int | float) or rate_raw <= 0:
            s.error("max_send_rate", f"{rate_raw!r} must be \"auto\" or a number above 0")
        else:
            rate = float(rate_raw)
    cfg = _walk(SesConfig, s, max_send_rate=rate)
    s.finish()
    return cfg


def _smtp(s: _Section) -> SmtpConfig:
    cfg = _walk(SmtpConfig, s, password=s.secret("password", "JPIXD_SMTP_PASSWORD"))
    if cfg.tls and cfg.starttls and s.has("starttls"):
        s.error("starttls", "cannot be combined with tls = true (implicit TLS)")
    if cfg.username is not None and cfg.password is None:
        s.error("password_file", "username is set but no password (password_file, "
                "\"ssm:/path\" or JPIXD_SMTP_PASSWORD)")
    s.finish()
    return cfg


def _mailbox(s: _Section) -> tuple[str, str | None]:
    """`from = "noc@example.jp"` with `from_name`, or the usual `from = "NOC <noc@…>"`."""
    text = s.text("from", "jpixd@localhost", required=True) or "jpixd@localhost"
    name = s.text("from_name", None)
    display, address = parseaddr(text)
    if display and address and address != text:
        if name is not None and name != display:
            s.error("from", f"{text!r} names the sender {display!r} and from_name says "
                    f"{name!r}: give the name once")
        name = name or display
        text = address
    if not _EMAIL.fullmatch(text):
        s.error("from", f"{text!r} is not an email address (write it as "
                "\"noc@example.jp\" or \"NOC <noc@example.jp>\"; from_name sets the name)")
    return text, name


def _mail(s: _Section) -> MailConfig:
    d = defaults(MailConfig)
    transport = s.text("transport", d("transport"), choices=TRANSPORTS)
    ses = _ses(s.section("ses"))
    smtp_section = s.section("smtp")
    smtp = _smtp(smtp_section)
    file_section = s.section("file")
    file_dir = file_section.path_value("dir", s.base_dir / "var" / "outbox")
    file_section.finish()
    if transport == "smtp" and smtp.host is None:
        smtp_section.error("host", "is required when mail.transport = \"smtp\"")
    from_addr, from_name = _mailbox(s)
    cfg = _walk(MailConfig, s, from_addr=from_addr, from_name=from_name,
                reply_to=s.email("reply_to", None), contact=_contact(s), transport=transport,
                list_unsubscribe=s.url("list_unsubscribe",
                                       schemes=("https", "http", "mailto")),
                ses=ses, smtp=smtp, file=FileTransportConfig(dir=file_dir or Path("var/outbox")))
    s.finish()
    return cfg


def _contact(s: _Section) -> str | None:
    """`[mail] contact`: one line of plain text (it goes in every mail's body)."""
    value = s.text("contact", None)
    if value is None:
        return None
    if not value.strip() or len(value) > 200 or any(
            ord(c) < 32 or ord(c) == 127 for c in value):
        s.error("contact", "must be one line of 1 to 200 characters (the operator's desk, "
                           "mail address or telephone)")
        return None
    return str(value.strip())


def _sending(s: _Section) -> SendingConfig:
    d = defaults(SendingConfig)
    raw_reminders = s.str_list("reminder_before", tuple(
        f"{int(b.total_seconds())}s" for b in d("reminder_before")))
    reminders: list[timedelta] = []
    for i, text in enumerate(raw_reminders):
        try:
            before = parse_duration(text)
        except ValueError:
            s.error(f"reminder_before[{i}]", f"{text!r} is not a duration")
            continue
        if before <= timedelta(0):
            s.error(f"reminder_before[{i}]", f"{text!r} must be longer than zero")
        reminders.append(before)
    burst_raw = s.raw("burst")
    burst: int | None = None
    if burst_raw is not _MISSING:
        if isinstance(burst_raw, bool) or not isinstance(burst_raw, int) or burst_raw < 1:
            s.error("burst", f"{burst_raw!r} must be a whole number of at least 1")
        else:
            burst = burst_raw
    cfg = _walk(SendingConfig, s, burst=burst,
                reminder_before=tuple(sorted(set(reminders), reverse=True)))
    _backoff_in_order(s, cfg.backoff, cfg.backoff_max)
    s.finish()
    return cfg


def _backoff_in_order(s: _Section, backoff: timedelta, backoff_max: timedelta) -> None:
    """A retry policy's cap is not below its first wait ([sending], [channels])."""
    if backoff_max < backoff:
        s.error("backoff_max", "must not be shorter than backoff")


def _channels(s: _Section) -> ChannelsConfig:
    cfg = _walk(ChannelsConfig, s)
    for i, text in enumerate(cfg.allowed_networks):
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            s.error(f"allowed_networks[{i}]", f"{text!r} is not a network (e.g. 10.1.0.0/16)")
    _backoff_in_order(s, cfg.backoff, cfg.backoff_max)
    s.finish()
    return cfg


def _bounces(s: _Section) -> BouncesConfig:
    cfg = _walk(BouncesConfig, s)
    if cfg.wait_time > timedelta(seconds=20):
        s.error("wait_time", "SQS long polls last at most 20s")
    if cfg.pause_bounce_rate >= SES_REVIEW_BOUNCE_RATE:
        s.error("pause_bounce_rate", f"{cfg.pause_bounce_rate} must be below SES's review "
                f"threshold {SES_REVIEW_BOUNCE_RATE}: the guard has to trip before SES does")
    if cfg.pause_complaint_rate >= SES_REVIEW_COMPLAINT_RATE:
        s.error("pause_complaint_rate", f"{cfg.pause_complaint_rate} must be below SES's review "
                f"threshold {SES_REVIEW_COMPLAINT_RATE}: the guard has to trip before SES does")
    if cfg.warn_bounce_rate >= cfg.pause_bounce_rate:
        s.error("warn_bounce_rate", "must be below pause_bounce_rate")
    if cfg.warn_complaint_rate >= cfg.pause_complaint_rate:
        s.error("warn_complaint_rate", "must be below pause_complaint_rate")
    s.finish()
    return cfg


def _cluster(s: _Section) -> ClusterConfig:
    cfg = _walk(ClusterConfig, s)
    if cfg.lease < timedelta(seconds=10):
        s.error("lease", "must be at least 10s (a send may take that long)")
    if cfg.leader_timeout < timedelta(seconds=3):
        s.error("leader_timeout", "must be at least 3s (a heartbeat every third of it)")
    s.finish()
    return cfg


def _archive(s: _Section) -> ArchiveConfig | None:
    if not s.data:
        return None
    cfg = _walk(ArchiveConfig, s)
    if cfg.kind == "firehose" and not cfg.stream:
        s.error("stream", "is required when kind = \"firehose\"")
    if cfg.kind == "file" and cfg.dir is None:
        s.error("dir", "is required when kind = \"file\"")
    s.finish()
    return cfg


def _backlog(s: _Section) -> BacklogConfig | None:
    if not s.data:
        return None
    base_url = s.url("base_url", required=True)
    before = len(s.errors)
    api_key = s.secret("api_key", "JPIXD_BACKLOG_API_KEY")
    if api_key is None and len(s.errors) == before:
        s.error("api_key_file", "no API key: set api_key_file, api_key = \"ssm:/path\" "
                "or the environment variable JPIXD_BACKLOG_API_KEY")
    ids_raw = s.raw("notified_user_ids")
    ids: tuple[int, ...] = ()
    if ids_raw is not _MISSING:
        if not isinstance(ids_raw, list) or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in ids_raw):
            s.error("notified_user_ids", f"{ids_raw!r} is not a list of user ids")
        else:
            ids = tuple(ids_raw)
    priority = s.raw("priority")
    cfg = _walk(BacklogConfig, s, base_url=(base_url or "").rstrip("/"),
                api_key=api_key or Secret("missing"),
                project_key=s.text("project_key", "", required=True),
                issue_type=s.text("issue_type", "", required=True),
                priority=str(priority) if priority is not _MISSING else "Normal",
                notified_user_ids=ids)
    s.finish()
    return cfg


def _whole(cls: type[D], s: _Section) -> D:
    """A section of declared settings only: each read, and any other key reported."""
    cfg = _walk(cls, s)
    s.finish()
    return cfg


def _timezone(root: _Section) -> str:
    tz = root.text("timezone", "Asia/Tokyo")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        root.error("timezone", f"{tz!r} is not a known time zone")
        return "Asia/Tokyo"
    return str(tz)


def load_mapping(data: Mapping[str, Any], *, base_dir: Path | None = None,
                 env: Mapping[str, str] | None = None, origin: str = "<mapping>") -> Config:
    """Build a Config from a parsed TOML document or raise ConfigError with every problem."""
    errors: list[str] = []
    base = base_dir or Path.cwd()
    root = _Section(data, "", errors, os.environ if env is None else env, base)
    state_dir = root.path_value("state_dir", base / "var") or base / "var"
    cfg = Config(
        state_dir=state_dir,
        timezone=_timezone(root),
        shutdown_timeout=root.duration("shutdown_timeout", timedelta(seconds=30)),
        database_url=root.text("database_url", None),
        database_password=root.secret("database_password", "JPIXD_DATABASE_PASSWORD"),
        http=(http := _http(root.section("http"))),
        web=_web(root.section("web"), http),
        sources=_sources(root),
        mail=_mail(root.section("mail")),
        sending=_sending(root.section("sending")),
        bounces=_bounces(root.section("bounces")),
        channels=_channels(root.section("channels")),
        backlog=_backlog(root.section("backlog")),
        archive=_archive(root.section("archive")),
        backup=_whole(BackupConfig, root.section("backup")),
        cluster=_cluster(root.section("cluster")),
        supervisor=_whole(SupervisorConfig, root.section("supervisor")),
        retention=_whole(RetentionConfig, root.section("retention")),
        ssm=_whole(SsmConfig, root.section("ssm")),
        logging=_whole(LoggingConfig, root.section("logging")),
        sample_subscribers=root.path_value("sample_subscribers", None),
        origin=origin,
    )
    if cfg.database_url is not None and not cfg.database_url.startswith(
            ("sqlite:", "postgresql://", "postgres://")):
        root.error("database_url", f"{cfg.database_url!r}: use sqlite:///path or "
                   "postgresql://user@host/db")
    elif cfg.database_url and urlsplit(cfg.database_url).password:
        root.error("database_url", "has a password in it: secrets are not written in the "
                   "config file; use database_password_file, database_password = "
                   "\"ssm:/path\" or JPIXD_DATABASE_PASSWORD")
    root.finish()
    if errors:
        raise ConfigError(errors)
    return cfg


def load_path(path: Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read a TOML file; relative paths inside it are relative to the file's folder."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    return load_mapping(data, base_dir=path.resolve().parent, env=env, origin=str(path))


def load_default(*, base_dir: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """The embedded default: state under ./var, file transport, bundled samples."""
    text = resources.files("jpixd.defaults").joinpath("jpixd.toml").read_text(encoding="utf-8")
    samples = Path(str(resources.files("jpixd.defaults").joinpath("samples")))
    text = text.replace("{samples_uri}", samples.as_uri()).replace("{samples}", str(samples))
    data = tomllib.loads(text)
    return load_mapping(data, base_dir=base_dir or Path.cwd(), env=env,
                        origin="<embedded default>")


def secrets(cfg: Any) -> Iterator[tuple[str, Secret]]:
    """Every Secret in the config with its key path (for resolution and redaction)."""
    def walk(obj: Any, path: str) -> Iterator[tuple[str, Secret]]:
        if isinstance(obj, Secret):
            yield path, obj
        elif is_dataclass(obj) and not isinstance(obj, type):
            for f in fields(obj):
                yield from walk(getattr(obj, f.name), f"{path}.{f.name}" if path else f.name)
        elif isinstance(obj, tuple):
            for i, item in enumerate(obj):
                yield from walk(item, f"{path}[{i}]")
    yield from walk(cfg, "")


def with_resolved_secrets(cfg: T, resolve: Callable[[Secret], Secret]) -> T:
    """Return a copy of `cfg` with every Secret passed through `resolve`."""
    def walk(obj: Any) -> Any:
        if isinstance(obj, Secret):
            return resolve(obj)
        if is_dataclass(obj) and not isinstance(obj, type):
            changes = {f.name: walk(getattr(obj, f.name)) for f in fields(obj)}
            return replace(obj, **changes)
        if isinstance(obj, tuple):
            return tuple(walk(x) for x in obj)
        return obj
    result: T = walk(cfg)
    return result
