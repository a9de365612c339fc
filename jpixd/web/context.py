"""What the public pages share, built once by `app` (typed aiohttp state)."""

from __future__ import annotations

from aiohttp import web

from jpixd.config import WebConfig
from jpixd.selfmail import limits_of
from jpixd.web.feedcache import FeedCache
from jpixd.web.guard import Csrf, Proxies, RateLimit
from jpixd.web.links import LinkBuilder
from jpixd.web.sysmail import SystemMail


class PublicContext:
    """The public pages' keys (through `links` and its signer), trusted proxies, CSRF,
    limits and mailer. `configure` sets what `[web]` decides, at start and on reload."""

    def __init__(self, cfg: WebConfig, links: LinkBuilder, mail: SystemMail,
                 legacy_unsubscribe_key: bytes, *, rehearsal: bool = False) -> None:
        self.mail = mail
        # Shadow mode (`run --shadow`): nothing is mailed, so nothing that needs a mail is
        # taken (a restart is what ends it: `jpixd cutover` needs the daemon stopped).
        self.rehearsal = rehearsal
        self.feeds = FeedCache()  # /notices.atom, /notices.ics, subscribers' calendars
        self.legacy_unsubscribe_key = legacy_unsubscribe_key  # links mailed before [web]
        self.configure(cfg, links)

    def configure(self, cfg: WebConfig, links: LinkBuilder) -> None:
        self.rehearsal_url = cfg.rehearsal_url
        self.legacy_param, self.legacy_by = (cfg.legacy_unsubscribe_param,
                                             cfg.legacy_unsubscribe_by)
        self.links = self.mail.links = links
        self.proxies = Proxies(cfg.trusted_proxies, ipv6_prefix=cfg.ipv6_client_prefix,
                               https_site=links.base_url.startswith("https://"))
        self.csrf = Csrf(links.signer, self.proxies)
        self.per_client = RateLimit(cfg.posts_per_client_hour)  # form posts per client
        self.mail.limits = limits_of(cfg)


PUBLIC = web.AppKey("public", PublicContext)
