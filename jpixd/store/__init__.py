"""The only code that speaks SQL. Loops share one store: `Store` on SQLite, `PgStore` on
PostgreSQL (several hosts)."""

from typing import TYPE_CHECKING, Union

from jpixd.store.base import Conflict, StoreError
from jpixd.store.sqlite import Store

if TYPE_CHECKING:
    from jpixd.store.pg.store import PgStore

# What the application holds: either store, so that mypy checks every use against both
# (it was typed as the SQLite one, PostgreSQL's assigned under a `type: ignore`). A
# forward reference: asyncpg is imported only when PostgreSQL is configured.
AnyStore = Union[Store, "PgStore"]

__all__ = ["AnyStore", "Conflict", "Store", "StoreError"]
