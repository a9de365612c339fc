"""What the public pages share, built once by `app` (typed aiohttp state)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from jpixd.web.guard import Csrf, Proxies, RateLimit
from jpixd.web.links import LinkBuilder, Signer
from jpixd.web.sysmail import SystemMail


@dataclass
class PublicContext:
    signer: Signer
    links: LinkBuilder
    proxies: Proxies
    csrf: Csrf
    per_client: RateLimit  # form posts per client address
    mail: SystemMail
    legacy_unsubscribe_key: bytes  # links mailed before [web] keys: still honoured


PUBLIC = web.AppKey("public", PublicContext)
