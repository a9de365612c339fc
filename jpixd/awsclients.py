"""Timeouts and retry budgets for the AWS clients (SES, SQS, SSM).

botocore's defaults (60 s to connect, 60 s to read, retries on top) outlast a loop's
staleness, so a network partition to AWS used to look like a wedged loop: readiness
false, no watchdog ping, systemd restarting the process over and over. With these,
every call gives up well inside its loop's staleness, the loop logs it, backs off and
stays alive, and recovers by itself when AWS answers again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiobotocore.config import AioConfig

CONNECT_TIMEOUT = 5.0


def client_config(*, read_timeout: float, attempts: int, pool: int = 10) -> AioConfig:
    from aiobotocore.config import AioConfig  # imported only by the code that uses AWS

    return AioConfig(connect_timeout=CONNECT_TIMEOUT, read_timeout=read_timeout,
                     retries={"total_max_attempts": attempts, "mode": "standard"},
                     max_pool_connections=pool)
