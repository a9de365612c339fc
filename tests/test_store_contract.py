"""The two stores offer the same contract: every public method of the SQLite Store is
on the PostgreSQL store with the same signature, so any code written against one runs on
the other (mypy checks the loops' protocols against both: jpixd/store/contract.py)."""

from __future__ import annotations

import inspect

from jpixd.store.pg.store import PgStore
from jpixd.store.sqlite import Store


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(getattr(cls, name)) for name in dir(cls)
            if not name.startswith("_") and callable(getattr(cls, name))
            and name != "open"}  # each opens its own kind of database


def test_the_postgresql_store_has_every_method_with_the_same_signature() -> None:
    sqlite, pg = _public(Store), _public(PgStore)
    assert sorted(set(sqlite) - set(pg)) == [], "missing on PostgreSQL"
    assert sorted(set(pg) - set(sqlite)) == [], "only on PostgreSQL"
    differ = {name: (str(sqlite[name]), str(pg[name])) for name in sqlite
              if str(sqlite[name]) != str(pg[name])}
    assert differ == {}
    # Both are asynchronous where the other is.
    assert {n for n in sqlite if inspect.iscoroutinefunction(getattr(Store, n))} == {
        n for n in pg if inspect.iscoroutinefunction(getattr(PgStore, n))}
