"""SES notifications processed per second through the bounce consumer and the store.

The queue is an in-process stand-in with SQS's receive/delete calls (moto's SQS manages
only about 35 receive+delete a second here, which would measure moto): 20,000
notifications, a fifth of them permanent bounces that suppress and file Backlog cases,
the rest deliveries, each SNS-wrapped as SES sends them, ten to a receive as SQS gives
them. What is measured is parsing, the rules, the store's transaction per message and
the deletes' bookkeeping.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from jpixd.bounces.consumer import BounceConsumer
from jpixd.config import BouncesConfig
from jpixd.mail.outbound import SendingSwitch
from jpixd.metrics import Metrics
from jpixd.store import Store

N = int(os.environ.get("BENCH_BOUNCES", "20000"))  # fewer for a quick look
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def notification(i: int) -> str:
    address = f"user{i}@isp{i % 50}.example.jp"
    mail = {"timestamp": "2026-11-28T06:00:00.000Z", "messageId": f"ses-{i}",
            "source": "noc@example.jp", "destination": [address]}
    if i % 5 == 0:
        ses: dict[str, Any] = {"notificationType": "Bounce", "mail": mail, "bounce": {
            "bounceType": "Permanent", "bounceSubType": "General", "feedbackId": f"fb-{i}",
            "timestamp": "2026-11-28T06:00:01.000Z",
            "bouncedRecipients": [{"emailAddress": address, "status": "5.1.1",
                                   "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}}
    else:
        ses = {"notificationType": "Delivery", "mail": mail, "delivery": {
            "timestamp": "2026-11-28T06:00:01.000Z", "recipients": [address],
            "smtpResponse": "250 ok", "processingTimeMillis": 500}}
    return json.dumps({"Type": "Notification", "MessageId": f"sns-{i}",
                       "TopicArn": "arn:aws:sns:ap-northeast-1:123456789012:ses",
                       "Message": json.dumps(ses), "Timestamp": "2026-11-28T06:00:02.000Z"})


class StandInQueue:
    """ReceiveMessage (up to 10) and DeleteMessageBatch, in memory."""

    def __init__(self, bodies: list[str]) -> None:
        self.waiting = deque(enumerate(bodies))
        self.deleted = 0

    async def receive_message(self, **kw: Any) -> dict[str, Any]:
        batch = [self.waiting.popleft() for _ in range(min(10, len(self.waiting)))]
        return {"Messages": [{"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": b}
                             for i, b in batch]}

    async def delete_message_batch(self, **kw: Any) -> dict[str, Any]:
        self.deleted += len(kw["Entries"])
        return {"Successful": kw["Entries"], "Failed": []}

    async def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
        return {"Successful": kw["Entries"], "Failed": []}


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(Path(tmp) / "bench.sqlite3")
        await store.migrate(NOW)
        queue = StandInQueue([notification(i) for i in range(N)])
        metrics = Metrics(CollectorRegistry())
        consumer = BounceConsumer(queue, BouncesConfig(queue_url="https://sqs.example/q",
                                                       wait_time=timedelta(0)),
                                  store, metrics, lambda: NOW, SendingSwitch(store, metrics),
                                  file_cases=True)
        t0 = time.perf_counter()
        while queue.waiting:
            await consumer.run_once()
        seconds = time.perf_counter() - t0
        suppressed = await store.suppressed_count()
        await store.close()
    print(f"bounces: notifications={N} deleted={queue.deleted} "  # noqa: T201
          f"suppressed={suppressed} seconds={seconds:.2f} per_s={N / seconds:.0f}")


def run(parts: list[str]) -> None:
    asyncio.run(main())
