"""PostgreSQL: pruning on purpose ([retention]), the same rules as on SQLite
(`jpixd.store.retention`), the same small batches."""

from __future__ import annotations

from datetime import datetime

from jpixd.store.pg.base import PgBase, q
from jpixd.store.retention import _RULES, BATCH, ORDER, Pruned


class PgRetentionStore(PgBase):
    async def prune(self, cutoffs: dict[str, datetime], *, batch: int = BATCH,
                    max_batches: int = 100) -> Pruned:
        counts = dict.fromkeys(ORDER, 0)
        budget = max_batches
        for what in ORDER:
            if what not in cutoffs:
                continue
            choose, deletes = _RULES[what]
            while budget > 0:
                budget -= 1
                async with self._tx() as conn:
                    ids = [int(r[0]) for r in await conn.fetch(q(choose), cutoffs[what],
                                                               batch)]
                    if not ids:
                        break
                    for sql in deletes:
                        await conn.execute(sql.format(ids="SELECT unnest($1::bigint[])"), ids)
                counts[what] += len(ids)
                if len(ids) < batch:
                    break
        return Pruned(counts)
