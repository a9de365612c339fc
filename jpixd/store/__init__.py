"""The only code that speaks SQL. Loops share one `Store`."""

from jpixd.store.sqlite import Store, StoreError

__all__ = ["Store", "StoreError"]
