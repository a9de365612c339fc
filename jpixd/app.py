"""The composition root: builds every component from the config, owns the signals, the
supervisor, the HTTP server and systemd notification, and shuts down in stages."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import re
import secrets as pysecrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from jpixd import __version__, logs, reload, statelock
from jpixd.backlog.client import BacklogClient
from jpixd.backlog.reconciler import Reconciler
from jpixd.channels.sender import ChannelSender
from jpixd.config import MIN_WEB_KEY, Config, ConfigError, Secret, secrets, web_keys
from jpixd.fanout import Policy
from jpixd.feeds.fetch import Fetcher
from jpixd.feeds.poller import FeedPoller
from jpixd.housekeeping import HousekeepingLoop
from jpixd.logs import REDACTOR
from jpixd.loop import LEADER_ROLES, Loop, Reloaded
from jpixd.mail.bucket import TokenBucket
from jpixd.mail.outbound import Outbound, SendingSwitch, rate_policy
from jpixd.mail.render import Renderer
from jpixd.mail.sender import Sender
from jpixd.mail.transports import Transport
from jpixd.mail.transports.file import FileTransport
from jpixd.mail.transports.smtp import SmtpTransport
from jpixd.metrics import Metrics
from jpixd.model import Clock, utcnow
from jpixd.runtime import Runtime
from jpixd.sdnotify import Notifier
from jpixd.secrets import resolve_ssm
from jpixd.store import AnyStore, Store
from jpixd.subscribers import parse_csv
from jpixd.supervisor import Supervisor
from jpixd.web.app import build_app
from jpixd.web.links import LinkBuilder, Signer
from jpixd.web.shed import GuardedSite, Limits, Shedder

if TYPE_CHECKING:  # the AWS clients are imported only by a daemon configured to use them
    from jpixd.cluster import Cluster
    from jpixd.mail.transports.ses import SesTransport

    # …and the public pages only by one that serves them.
    from jpixd.web.context import PublicContext

log = structlog.get_logger("jpixd.app")


MIN_TOKEN = 16


def token_problem(token: str) -> str | None:
    """What is wrong with a configured admin token (`check-config` and `run` alike)."""
    if len(token) < MIN_TOKEN:
        return (f"http.admin_token: the admin token has {len(token)} characters; use at "
                f"least {MIN_TOKEN} (e.g. the output of `openssl rand -hex 32`)")
    return None


def admin_token(cfg: Config) -> str:
    """The configured admin token, or (embedded default only) one kept in state_dir. A
    short token is refused: it guards sending, subscribers and their addresses."""
    if cfg.http.admin_token is not None:
        token = cfg.http.admin_token.get()
        problem = token_problem(token)
        if problem:
            raise ConfigError([problem])
        return token
    return _kept_secret(cfg.state_dir / "admin-token", pysecrets.token_urlsafe(32),
                        "an admin token")


def _kept_secret(path: Path, fresh: str, what: str) -> str:
    """The secret kept at `path` (the embedded default's), made from `fresh` the first
    time: created 0600 from the start, never world-readable even for a moment."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(fresh + "\n")
    log.info("secret generated", what=what, file=str(path))
    return fresh


def web_signing_keys(cfg: Config) -> list[str] | None:
    """`[web] secret_keys` (first signs, all verify), or (embedded default only) one key
    kept in state_dir; None when neither: no signed links, no public pages."""
    if cfg.web.secret_keys:
        keys = web_keys(cfg.web.secret_keys)
        short = [k for k in keys if len(k) < MIN_WEB_KEY]
        if not keys or short:
            raise ConfigError([f"web.secret_keys: every key needs at least {MIN_WEB_KEY} "
                               "characters (e.g. the output of `openssl rand -hex 32`)"])
        return keys
    if not cfg.web.generate_secret_keys:
        return None
    kept = _kept_secret(cfg.state_dir / "web-keys", pysecrets.token_hex(32),
                        "a link signing key")
    return [k for k in kept.split() if k]


def build_links(cfg: Config, keys: list[str] | None) -> LinkBuilder | None:
    if keys is None or cfg.web.base_url is None:
        return None
    return LinkBuilder(cfg.web.base_url, Signer(keys), confirm_ttl=cfg.web.confirm_ttl,
                       manage_ttl=cfg.web.manage_ttl)


async def open_store(cfg: Config, clock: Clock) -> AnyStore:
    """The configured database, migrated."""
    store, _ = await open_migrated(cfg, clock)
    return store


async def open_migrated(cfg: Config, clock: Clock) -> tuple[AnyStore, list[int]]:
    """The configured database, migrated, and the migrations applied now: SQLite's file,
    or PostgreSQL's pool (the password resolved first: it may be an ssm: reference)."""
    store, where = await open_unmigrated(cfg)
    try:
        applied = await store.migrate(clock())
        await store.set_archiving(cfg.archive is not None)
    except BaseException:
        await store.close()
        raise
    if applied:
        log.info("database migrated", database=where, applied=applied)
    return store, applied


async def open_unmigrated(cfg: Config) -> tuple[AnyStore, str]:
    """The configured database as it is, and where it is (for messages): SQLite's file,
    or PostgreSQL's pool (the password resolved first: it may be an ssm: reference)."""
    if cfg.postgres:
        from jpixd.store.pg.store import PgStore

        cfg = await resolve_ssm(cfg)
        password = cfg.database_password.get() if cfg.database_password else None
        store: AnyStore = await PgStore.open(str(cfg.database_url), password)
        where = _without_password(str(cfg.database_url))
    else:
        store = await Store.open(cfg.database_path)
        where = str(cfg.database_path)
    store.tz = cfg.tz
    return store, where


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()


async def build_transport(cfg: Config) -> Transport:
    if cfg.mail.transport == "ses":
        from jpixd.mail.transports.ses import SesTransport

        ses = SesTransport(cfg.mail.ses)
        await ses.start()
        return ses
    if cfg.mail.transport == "smtp":
        return SmtpTransport(cfg.mail.smtp)
    return FileTransport(cfg.mail.file.dir)


async def build_quota_source(cfg: Config, transport: Transport) -> SesTransport | None:
    """Where the SES sending quota is read: the SES transport itself, or, for SES's SMTP
    interface (email-smtp.REGION.amazonaws.com), the SES API of that region (with the
    host's credentials); None for any other transport."""
    region = ses_smtp_region(cfg.mail.smtp.host) if cfg.mail.transport == "smtp" else None
    if transport.name != "ses" and region is None:
        return None  # and the SES client is never imported
    from jpixd.mail.transports.ses import SesTransport

    if isinstance(transport, SesTransport):
        return transport
    quota = SesTransport(replace(cfg.mail.ses, region=region or cfg.mail.ses.region))
    await quota.start()
    return quota


def ses_smtp_region(host: str | None) -> str | None:
    m = re.fullmatch(r"email-smtp(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com", host or "")
    return m.group(1) if m else None


def unsubscribe_key(token: str) -> bytes:
    """The key of List-Unsubscribe tokens, derived from the admin token (rotating that
    token invalidates old unsubscribe links, which then fall back to the reply address)."""
    return hashlib.sha256(b"jpixd-unsubscribe\0" + token.encode()).digest()


def build_outbound(cfg: Config, store: AnyStore, transport: Transport, metrics: Metrics,
                   quota_from: SesTransport | None = None) -> Outbound:
    """The one way out, with the rate `rate_policy` gives this configuration."""
    policy = rate_policy(cfg.mail.ses, transport.name, quota_from is not None)
    return Outbound(transport, TokenBucket(policy.account, cfg.sending.burst), metrics,
                    policy, SendingSwitch(store, metrics), quota_from=quota_from,
                    quota_refresh=cfg.mail.ses.quota_refresh.total_seconds())


def build_sender(cfg: Config, store: AnyStore, transport: Transport, metrics: Metrics,
                 clock: Clock, token: str, quota_from: SesTransport | None = None,
                 links: LinkBuilder | None = None) -> Sender:
    renderer = Renderer(cfg.mail, unsubscribe_key(token), cfg.tz, links)
    return Sender(store, build_outbound(cfg, store, transport, metrics, quota_from),
                  renderer, metrics, clock, cfg.sending,
                  lease=cfg.cluster.lease)


def public_context(cfg: Config, rt: Runtime, sender: Sender,
                   links: LinkBuilder) -> PublicContext:
    from jpixd.selfmail import limits_of
    from jpixd.web.context import PublicContext
    from jpixd.web.sysmail import SystemMail

    mail = SystemMail(rt.store, sender.wake.set, links, rt.metrics, rt.clock,
                      limits_of(cfg.web), cfg.bounces)
    return PublicContext(cfg.web, links, mail, sender.renderer.unsubscribe_key,
                         rehearsal=sender.shadow)


async def seed_sample_subscribers(cfg: Config, store: AnyStore, clock: Clock) -> None:
    """The embedded default's sample subscribers, imported once into an empty database."""
    if cfg.sample_subscribers is None or (await store.list_subscribers(limit=1))[1]:
        return
    rows, errors = parse_csv(await asyncio.to_thread(cfg.sample_subscribers.read_bytes))
    if errors:
        raise RuntimeError(f"bundled sample subscribers are invalid: {errors}")
    result = await store.import_subscribers([(r.subscriber, r.columns) for r in rows],
                                            clock())
    log.info("sample subscribers imported", created=result.created,
             file=str(cfg.sample_subscribers))


class ModeRefused(Exception):
    """The database is in a mode this run may not take over (shadow, not cut over)."""


class Daemon:
    """One running jpixd: `await Daemon(cfg).run()` returns the process exit code."""

    def __init__(self, cfg: Config, *, baseline: bool = False, shadow: bool = False,
                 extra_loops: Sequence[Loop] = (), registry: CollectorRegistry | None = None,
                 notifier: Notifier | None = None, clock: Clock = utcnow,
                 monotonic: Callable[[], float] = time.monotonic,
                 reload_from: Callable[[], Config] | None = None) -> None:
        self.cfg = cfg
        # How SIGHUP reads the configuration again (the file `jpixd run` was given).
        self.reload_from = reload_from
        self._reloading: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._quota: SesTransport | None = None
        self.baseline = baseline
        self.shadow = shadow
        self.extra_loops = list(extra_loops)
        self.metrics = Metrics(registry)
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.monotonic = monotonic
        self.runtime: Runtime | None = None
        self._links: LinkBuilder | None = None
        self.public: PublicContext | None = None
        self.bound: list[str] = []
        self.public_bound: list[str] = []
        self.ready = asyncio.Event()
        self.cluster: Cluster | None = None

    async def _join(self, cfg: Config) -> Cluster:
        """Several hosts: take part in leadership and the shared send rate."""
        from jpixd.cluster import Cluster

        password = cfg.database_password.get() if cfg.database_password else None
        cluster = Cluster(str(cfg.database_url), password,
                          leader_timeout=cfg.cluster.leader_timeout, metrics=self.metrics,
                          clock=self.clock)
        await cluster.start()
        return cluster

    def _share(self, cluster: Cluster, loops: list[Loop]) -> None:
        """The loops ask the cluster whether this host leads their role; a role taken
        over starts its loop at once; the sender takes its part of the rate and passes
        on a throttle."""
        for lp in loops:
            lp.leads = cluster.leads

        def gained(roles: set[str]) -> None:
            for lp in loops:
                if lp.role in roles or lp.part_role in roles:
                    lp.wake.set()

        cluster.on_gain(gained)
        sender = next((lp for lp in loops if isinstance(lp, Sender)), None)
        if sender is None:
            return

        def heard(what: str) -> None:
            """A change another host committed (LISTEN/NOTIFY): acted on now."""
            if what == "deliveries":
                sender.wake.set()
            elif what == "sending":
                sender.sending_changed()
                for lp in loops:
                    if lp.name in ("backlog", "housekeeping"):  # the issue, the gauge
                        lp.wake.set()

        cluster.on_notice(heard)

        cluster.on_hosts(sender.outbound.set_hosts)
        cluster.on_throttle(sender.outbound.throttled)
        sender.throttled = cluster.report_throttle

    async def _take_mode(self, store: AnyStore) -> None:
        mode = await store.mode()
        if mode.get("moved_to"):
            raise ModeRefused(
                f"this database was moved to {mode['moved_to']} at {mode.get('moved_at')} "
                "(`jpixd migrate-to`): jpixd runs on that one now (database_url), and a run "
                "on this copy would mail again what that one sends. To come back to this "
                "host, restore the backup taken before the move (README: Several hosts)")
        if self.shadow and mode.get("cutover_at"):
            # A shadow drop-in left behind after the cut-over must not silently stop the
            # mail: say so, and let the operator remove it (README: Deploying).
            raise ModeRefused(
                f"this database was cut over at {mode['cutover_at']}: it sends for real and "
                "is not put back in shadow mode; run `jpixd run` without --shadow (remove "
                "the unit's shadow drop-in, jpixd.service.d/shadow.conf)")
        if self.shadow:
            await store.enter_shadow(self.clock())
            log.warning("shadow mode: every mail is rendered and kept, none is sent "
                        "(`jpixd shadow report` shows them; `jpixd cutover` ends it)")
        elif mode.get("shadow"):
            raise ModeRefused(
                "this database was run in shadow mode and not cut over: a plain run would "
                "mail every notice the old system has announced. Run `jpixd cutover` "
                "first (or `jpixd run --shadow` to go on shadowing)")

    def _loops(self, cfg: Config, store: AnyStore, http: aiohttp.ClientSession,
               transport: Transport, token: str, sqs: Any, firehose: Any = None) -> list[Loop]:
        if transport.name != "ses":  # "no SES quota here", not "the quota is used up"
            self.metrics.ses_quota_remaining.set(math.nan)
        sender = build_sender(cfg, store, transport, self.metrics, self.clock, token,
                              quota_from=self._quota, links=self._links)
        sender.shadow = self.shadow
        switch = sender.outbound.switch
        channels = ChannelSender(store, cfg.channels, self.metrics, self.clock,
                                 lease=cfg.cluster.lease,
                                 page_url=self._links.notice if self._links else None)
        channels.shadow = self.shadow
        loops: list[Loop] = [HousekeepingLoop(store, self.metrics, self.clock, switch,
                                              bounces=cfg.bounces, retention=cfg.retention),
                             sender, channels]
        if sqs is not None:
            from jpixd.bounces.consumer import BounceConsumer

            loops.append(BounceConsumer(
                sqs, cfg.bounces, store, self.metrics, self.clock, switch,
                file_cases=cfg.backlog is not None))
        if any(s.enabled for s in cfg.sources):
            loops.append(FeedPoller(cfg.sources, store, Fetcher(http), self.metrics,
                                    self.clock, Policy.from_config(cfg),
                                    baseline=self.baseline, on_deliveries=sender.wake.set))
        if cfg.backlog is not None:
            client = BacklogClient(http, cfg.backlog.base_url, cfg.backlog.api_key.get(),
                                   metrics=self.metrics,
                                   timeout=cfg.backlog.timeout.total_seconds())
            loops.append(Reconciler(client, cfg.backlog, store, self.metrics, self.clock))
        if cfg.archive is not None:
            from jpixd.archive import ArchiveLoop, sink_for

            loops.append(ArchiveLoop(store, sink_for(cfg.archive, self.clock, firehose),
                                     cfg.archive, self.metrics, self.clock))
        return loops + self.extra_loops

    async def run(self) -> int:
        cfg = await resolve_ssm(self.cfg)
        REDACTOR.add(s.value for _, s in secrets(cfg) if isinstance(s, Secret) and s.value)
        token = admin_token(cfg)
        REDACTOR.add([token])
        keys = web_signing_keys(cfg)
        REDACTOR.add(keys or [])
        self._links = build_links(cfg, keys)
        if cfg.http.public_listen is not None and self._links is None:
            raise ConfigError(["web.base_url: the public pages need it (links in their "
                               "mails are built on it)"])
        async with contextlib.AsyncExitStack() as stack:
            stack.enter_context(statelock.hold(cfg.state_dir, self.clock()))
            store = await open_store(cfg, self.clock)
            stack.push_async_callback(store.close)
            if cfg.postgres:
                self.cluster = await self._join(cfg)
                stack.push_async_callback(self.cluster.close)
            else:  # the one host runs every singleton loop
                for role in LEADER_ROLES:
                    self.metrics.leader.labels(role).set(1)
            await self._take_mode(store)
            await seed_sample_subscribers(cfg, store, self.clock)
            http = self._http = await stack.enter_async_context(aiohttp.ClientSession())
            transport = await build_transport(cfg)
            stack.push_async_callback(transport.close)
            self._quota = await build_quota_source(cfg, transport)
            if self._quota is not None and self._quota is not transport:
                stack.push_async_callback(self._quota.close)
            sqs = None
            if cfg.bounces.queue_url:
                # A long poll answers within wait_time; 10 s more is a partition.
                from aiobotocore.session import get_session

                from jpixd.awsclients import client_config

                sqs = await stack.enter_async_context(get_session().create_client(
                    "sqs", region_name=cfg.bounces.region,
                    endpoint_url=cfg.bounces.endpoint_url, config=client_config(
                        read_timeout=cfg.bounces.wait_time.total_seconds() + 10,
                        attempts=2)))
            firehose = None
            if cfg.archive is not None and cfg.archive.kind == "firehose":
                from aiobotocore.session import get_session

                from jpixd.awsclients import client_config

                firehose = await stack.enter_async_context(get_session().create_client(
                    "firehose", region_name=cfg.archive.region,
                    endpoint_url=cfg.archive.endpoint_url,
                    config=client_config(read_timeout=10, attempts=2)))
            return await self._run(cfg, store, token, http, transport, sqs, firehose)
        raise AssertionError("unreachable")  # AsyncExitStack does not swallow the return

    async def _run(self, cfg: Config, store: AnyStore, token: str,
                   http: aiohttp.ClientSession, transport: Transport, sqs: Any,
                   firehose: Any = None) -> int:
        loops = self._loops(cfg, store, http, transport, token, sqs, firehose)
        if self.cluster is not None:
            self._share(self.cluster, loops)
        supervisor = Supervisor(loops, self.metrics, cfg.supervisor, self.monotonic)
        sender = next(lp for lp in loops if isinstance(lp, Sender))
        poller = next((lp for lp in loops if isinstance(lp, FeedPoller)), None)
        rt = self.runtime = Runtime(
            config=cfg, store=store, metrics=self.metrics, supervisor=supervisor,
            clock=self.clock, admin_token=token, started_at=self.clock(),
            loops={lp.name: lp for lp in loops}, cluster=self.cluster,
            outbound=sender.outbound, renderer=lambda: sender.renderer,
            poll_source=poller.poll_named if poller is not None else None,
        )
        await sender.outbound.switch.state()  # the gauge, before the first scrape
        h = cfg.http
        shedder = Shedder(Limits(h.header_timeout.total_seconds(), h.body_timeout.total_seconds(),
                                 h.max_connections), self.metrics, "admin")
        runner = web.AppRunner(build_app(rt, shedder=shedder),
                               access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = GuardedSite(runner, cfg.http.listen.host, cfg.http.listen.port, shedder)
            await site.start()
            self.bound = [_address(a) for a in runner.addresses]
            log.info("http listening", addresses=self.bound, version=__version__)
            async with self._public_pages(rt, cfg):
                return await self._supervise(supervisor, cfg)
        finally:
            await asyncio.wait_for(runner.cleanup(), timeout=5.0)

    @contextlib.asynccontextmanager
    async def _public_pages(self, rt: Runtime, cfg: Config) -> AsyncIterator[None]:
        """The public listener, when `public_listen` is set: its own app (no admin route
        on it), its own connection limits."""
        listen = cfg.http.public_listen
        sender = rt.loops.get("sender")
        if listen is None or self._links is None or not isinstance(sender, Sender):
            yield
            return
        ctx = self.public = public_context(cfg, rt, sender, self._links)
        h = cfg.http
        shedder = Shedder(Limits(h.header_timeout.total_seconds(), h.body_timeout.total_seconds(),
                                 h.max_connections, h.max_connections_per_client),
                          self.metrics, "public", proxies_of=lambda: ctx.proxies)
        from jpixd.web.public import build_public_app

        runner = web.AppRunner(build_public_app(rt, self.public, shedder),
                               access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await GuardedSite(runner, listen.host, listen.port, shedder).start()
            self.public_bound = [_address(a) for a in runner.addresses]
            log.info("public pages listening", addresses=self.public_bound,
                     base_url=cfg.web.base_url)
            yield
        finally:
            await asyncio.wait_for(runner.cleanup(), timeout=5.0)

    async def _supervise(self, supervisor: Supervisor, cfg: Config) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig, supervisor)
        # SIGHUP's default would kill the process without a drain, and systemd counts
        # that as a clean exit: never let it (reloading the config is its own work).
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)
        sup_task = asyncio.create_task(supervisor.run(), name="supervisor")
        watchdog: asyncio.Task[None] | None = None
        try:
            await _first(supervisor.started.wait(), sup_task)
            if not sup_task.done():
                self.notifier.ready()
                self.ready.set()
                log.info("jpixd ready", loops=[lp.name for lp in supervisor.loops],
                         config=cfg.origin)
                watchdog = asyncio.create_task(self._watchdog(supervisor), name="watchdog")
            await _first(supervisor.stopping.wait(), sup_task)
            self.notifier.stopping()
            log.info("shutting down", reason=supervisor.failure or "signal",
                     timeout=cfg.shutdown_timeout.total_seconds())
            return await self._drain(sup_task, supervisor, cfg.shutdown_timeout.total_seconds())
        finally:
            if watchdog is not None:
                watchdog.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _drain(self, sup_task: asyncio.Task[int], supervisor: Supervisor,
                     limit: float) -> int:
        """Let the loops finish their unit of work; cancel whatever outlives the timeout."""
        try:
            await asyncio.wait_for(asyncio.shield(sup_task), timeout=limit)
        except TimeoutError:
            still = [name for name, st in supervisor.status.items() if st.up]
            log.warning("loops did not stop in time; cancelling", loops=still)
            sup_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sup_task
        except Exception:
            log.exception("supervisor failed")
            return 1
        if supervisor.failure:
            log.error("exiting after repeated loop crashes", reason=supervisor.failure)
        return supervisor.exit_code

    def _on_hangup(self) -> None:
        if self._reloading is not None and not self._reloading.done():
            log.warning("SIGHUP received while a reload runs: ignored")
            return
        self._reloading = asyncio.create_task(self._reload(), name="reload")

    async def _reload(self) -> None:
        """SIGHUP: the configuration and its secrets read again; what can change live
        does, what cannot is reported; a configuration with errors changes nothing."""
        rt = self.runtime
        if rt is None or self.reload_from is None:
            log.warning("SIGHUP received: nothing to reload from")
            return
        self.notifier.reloading()
        try:
            new = await resolve_ssm(await asyncio.to_thread(self.reload_from))
            token = admin_token(new)
        except ConfigError as err:
            log.error("configuration reload refused: the running configuration stays",
                      errors=err.errors)
            self.notifier.ready()
            return
        p = reload.plan(rt.config, new)
        self._apply(rt, p.effective, p.live, token)
        rt.config = p.effective
        log.info("configuration reloaded", changed=list(p.live),
                 needs_restart=list(p.restart))
        self.notifier.ready()

    def _reload_web(self, cfg: Config, rt: Runtime) -> None:
        """New link keys (a key put in front signs from now on; the others still verify),
        base URL, limits. Without keys or base URL the links go (the pages stay up with
        the last good keys: a reload cannot take the listener away)."""
        keys = web_signing_keys(cfg)
        REDACTOR.add(keys or [])
        links = build_links(cfg, keys)
        if links is None and self.public is not None:
            log.error("web.base_url or web.secret_keys missing after reload: the public "
                      "pages keep the previous keys")
            return
        self._links = links
        if self.public is not None and links is not None:
            self.public.configure(cfg.web, links)

    def _apply(self, rt: Runtime, cfg: Config, live: Sequence[str], token: str) -> None:
        """What the daemon itself holds changes here; every loop takes its own part of
        the new configuration (`Loop.apply`)."""
        if "logging" in live:
            logs.configure(cfg.logging.level, cfg.logging.format)
        if "http.admin_token" in live:
            REDACTOR.add([token])
            rt.admin_token = token
        if "timezone" in live:
            rt.store.tz = cfg.tz
        if "web" in live:
            self._reload_web(cfg, rt)
        change = Reloaded(cfg, frozenset(live), self.metrics, self._links, self._http)
        for lp in rt.loops.values():
            lp.apply(change)

    def _on_signal(self, sig: signal.Signals, supervisor: Supervisor) -> None:
        log.info("signal received", signal=sig.name)
        supervisor.stop()

    async def _watchdog(self, supervisor: Supervisor) -> None:
        """WATCHDOG=1 only while every loop is fresh: a wedged loop gets us restarted."""
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        while True:
            ok, reasons = supervisor.healthy()
            if ok:
                self.notifier.watchdog()
            else:
                log.warning("withholding watchdog ping", reasons=reasons)
            await asyncio.sleep(interval)


async def _first(*aws: Awaitable[Any]) -> None:
    """Wait until the first of these finishes; cancel the helpers, leave given tasks running."""
    futures = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f, a in zip(futures, aws, strict=True):
            if f is not a:
                f.cancel()


def _address(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)


def state_dir_writable(path: Path) -> str | None:
    """None when jpixd can keep its state there, else why not (for check-config)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"state_dir: cannot create {str(path)!r}: {exc.strerror or exc}"
    if not os.access(path, os.W_OK):
        return f"state_dir: {str(path)!r} is not writable"
    return None
