"""The only code that speaks SQL. Loops share one `Store`."""

from jpixd.store.base import Conflict, StoreError
from jpixd.store.sqlite import Store

__all__ = ["Conflict", "Store", "StoreError"]
