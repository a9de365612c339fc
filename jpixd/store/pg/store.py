"""The Store on PostgreSQL: every part's methods on one pool (issue 16)."""

from __future__ import annotations

from jpixd.store.channels import ChannelQueries
from jpixd.store.control import ControlStore
from jpixd.store.deliveries import DeliveryQueries
from jpixd.store.events import EventQueries
from jpixd.store.feeds import FeedStore
from jpixd.store.notices import NoticeQueries
from jpixd.store.pg.archive import PgArchiveStore
from jpixd.store.retention import RetentionStore
from jpixd.store.selfmail import SelfMailQueries
from jpixd.store.shadow import ShadowStore
from jpixd.store.subscribers import SubscriberQueries
from jpixd.store.tickets import TicketQueries


class PgStore(ControlStore, NoticeQueries, SubscriberQueries, DeliveryQueries, FeedStore,
              EventQueries, TicketQueries, RetentionStore, PgArchiveStore, ShadowStore,
              SelfMailQueries, ChannelQueries):
    """The same public methods as `jpixd.store.sqlite.Store`, with the same signatures
    (a test compares them), for hosts sharing one PostgreSQL database."""

    @classmethod
    async def open(cls, url: str, password: str | None = None, *,
                   pool_size: int = 10) -> PgStore:
        return cls(await cls._connect(url, password, max_size=pool_size), url)
