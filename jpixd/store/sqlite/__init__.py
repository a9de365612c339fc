"""The Store on SQLite: every part's methods on one shared connection."""

from __future__ import annotations

from pathlib import Path

from jpixd.store.channels import ChannelQueries
from jpixd.store.control import ControlStore
from jpixd.store.deliveries import DeliveryQueries
from jpixd.store.events import EventQueries
from jpixd.store.feeds import FeedStore
from jpixd.store.notices import NoticeQueries
from jpixd.store.retention import RetentionStore
from jpixd.store.selfmail import SelfMailQueries
from jpixd.store.shadow import ShadowStore
from jpixd.store.sqlite.archive import ArchiveStore
from jpixd.store.subscribers import SubscriberQueries
from jpixd.store.tickets import TicketQueries


class Store(ControlStore, NoticeQueries, SubscriberQueries, DeliveryQueries, FeedStore,
            EventQueries, TicketQueries, RetentionStore, ArchiveStore, ShadowStore,
            SelfMailQueries, ChannelQueries):
    """Public methods speak the domain (aware datetimes, dataclasses), never rows, so a
    PostgreSQL store can stand beside this one."""

    @classmethod
    async def open(cls, path: Path) -> Store:
        return cls(await cls._connect(path), path)
