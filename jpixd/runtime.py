"""What the HTTP layer and the loops share at run time, built once by `app`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from jpixd.cluster import Cluster
from jpixd.config import Config
from jpixd.feeds.poller import PollReport
from jpixd.loop import Loop
from jpixd.mail.outbound import Outbound
from jpixd.mail.render import Renderer
from jpixd.metrics import Metrics
from jpixd.model import Clock
from jpixd.store import AnyStore
from jpixd.supervisor import Supervisor


@dataclass
class Runtime:
    config: Config
    store: AnyStore
    metrics: Metrics
    supervisor: Supervisor
    clock: Clock
    admin_token: str
    started_at: datetime
    # The one way out: transport, rate, quota, pause and resume (jpixd.mail.outbound).
    outbound: Outbound
    loops: dict[str, Loop] = field(default_factory=dict)
    # Several hosts on PostgreSQL: who leads what (None on SQLite: this host runs all).
    cluster: Cluster | None = None
    # What else the web needs of the loops, as typed surfaces (never a loop's class): the
    # mail renderer as it is now (a reload replaces it: previews, one-click unsubscribe),
    # and "poll this source now".
    renderer: Callable[[], Renderer] | None = None
    poll_source: Callable[[str], Awaitable[PollReport | None]] | None = None

    def wake(self, name: str) -> None:
        """Cut a loop's wait short (e.g. the sender after a resume)."""
        lp = self.loops.get(name)
        if lp is not None:
            lp.wake.set()
