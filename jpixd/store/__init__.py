"""The only code that speaks SQL. Loops share one store: `Store` on SQLite, `PgStore` on
PostgreSQL (several hosts).

Laid out so that a reader sees the three apart:
- `jpixd/store/*.py`: what both databases share — each area's statements written once
  against `Tx`/`Queries` (`?` placeholders, datetimes as parameters), the rows' shapes,
  and the rules between statements. `contract.py` says what each loop needs.
- `jpixd/store/sqlite/`: the SQLite driver (`base`), its hot transactions run in one trip
  to the database thread, its archive triggers and audience cache; `Store`.
- `jpixd/store/pg/`: the PostgreSQL driver, its versions of the hot transactions (COPY,
  advisory locks, NOTIFY), its triggers; `PgStore`.
The SQLite migrations (`migrations/`, `migrate.py`) stay where released packages keep them.
"""

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
