"""The event archive loop: the outbox (jpixd/store/archive.py) drained to Firehose or to
local files, in commit order, each record deleted only once the sink has accepted it.

At least once: a crash between a sink's acceptance and the delete sends those records
again, each with the same `seq`, so a consumer can drop the repeat. Sending mail never
waits for any of this: the records are written by the same transactions as the changes,
and the loop is on its own.
"""

from __future__ import annotations

import asyncio
import os
import random
from datetime import UTC
from pathlib import Path
from typing import Any, Protocol

import structlog

from jpixd.config import ArchiveConfig
from jpixd.loop import Loop
from jpixd.metrics import Metrics
from jpixd.model import Clock
from jpixd.retry import Backoff
from jpixd.store.contract import ArchiveOutbox

log = structlog.get_logger("jpixd.archive")

MAX_BATCH_BYTES = 4 * 1024 * 1024  # PutRecordBatch: 4 MiB in all
MAX_RECORD_BYTES = 1000 * 1024  # and 1,000 KiB a record


class SinkUnavailable(Exception):
    """The whole call failed (throttled, unreachable, refused): try the batch later."""


class Sink(Protocol):
    name: str

    async def put(self, lines: list[str]) -> list[bool]:
        """Deliver the lines; which of them were accepted (the rest are tried again)."""
        ...


class FirehoseSink:
    name = "firehose"

    def __init__(self, client: Any, stream: str) -> None:
        self.client, self.stream = client, stream

    async def put(self, lines: list[str]) -> list[bool]:
        from botocore.exceptions import BotoCoreError, ClientError

        records = [{"Data": _fitting(line)} for line in lines]
        try:
            answer = await self.client.put_record_batch(DeliveryStreamName=self.stream,
                                                        Records=records)
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            raise SinkUnavailable(str(exc)[:300]) from exc
        results = answer.get("RequestResponses", [])
        if len(results) != len(lines):  # an answer we cannot read: nothing counts
            raise SinkUnavailable(f"{len(results)} answers for {len(lines)} records")
        return ["ErrorCode" not in r for r in results]


def _fitting(line: str) -> bytes:
    """The record as bytes; one over Firehose's record limit (none of ours should be) is
    replaced by a stub that keeps its `seq`, so the stream neither stalls nor lies."""
    data = line.encode()
    if len(data) <= MAX_RECORD_BYTES:
        return data
    seq = line[len('{"seq":'):].split(",", 1)[0]
    log.error("archive record over Firehose's record limit: replaced by a stub",
              seq=seq, size=len(data))
    return f'{{"seq":{seq},"type":"oversized","bytes":{len(data)}}}\n'.encode()


class FileSink:
    """Appends to one JSON-lines file per UTC hour (a new part past `max_bytes`), flushed
    to disk before the records are deleted; the oldest files beyond `keep` go."""

    name = "file"

    def __init__(self, directory: Path, *, max_bytes: int, keep: int,
                 clock: Clock) -> None:
        self.dir, self.max_bytes, self.keep, self.clock = directory, max_bytes, keep, clock

    async def put(self, lines: list[str]) -> list[bool]:
        try:
            await asyncio.to_thread(self._append, "".join(lines).encode())
        except OSError as exc:
            raise SinkUnavailable(f"{self.dir}: {exc.strerror or exc}") from exc
        return [True] * len(lines)

    def _append(self, data: bytes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        hour = self.clock().astimezone(UTC).strftime("%Y%m%dT%H")
        part = 0
        while True:
            path = self.dir / f"archive-{hour}-{part:03d}.jsonl"
            if not path.exists() or path.stat().st_size + len(data) <= self.max_bytes:
                break
            part += 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        files = sorted(self.dir.glob("archive-*.jsonl"))
        for old in files[:-self.keep]:
            old.unlink(missing_ok=True)


class ArchiveLoop(Loop):
    name = "archive"
    role = "archive"  # one host at a time (several hosts)

    def __init__(self, store: ArchiveOutbox, sink: Sink, cfg: ArchiveConfig, metrics: Metrics,
                 clock: Clock, rng: random.Random | None = None) -> None:
        super().__init__()
        self.store, self.sink, self.cfg, self.metrics, self.clock = (store, sink, cfg,
                                                                     metrics, clock)
        self.interval = cfg.interval.total_seconds()
        self.rng = rng or random.Random()
        self._busy = False
        self._failures = 0

    @property
    def stale_after(self) -> float:
        return max(3 * self.interval, 180.0)  # above the longest backoff (a minute, +20 %)

    def reset(self) -> None:
        self._busy, self._failures = False, 0

    def next_delay(self) -> float:
        if self._failures:  # the sink is down: back off, up to a minute (jpixd.retry)
            return Backoff(2 * self.interval, 60.0).delay(self._failures, self.rng)
        return 0.0 if self._busy else self.interval

    async def run_once(self) -> None:
        self._busy = False
        batch = await self.store.archive_batch(self.cfg.batch_size, MAX_BATCH_BYTES)
        if batch:
            try:
                accepted = await self.sink.put([line for _, line in batch])
            except SinkUnavailable as exc:
                self._failures += 1
                self.degraded = f"archive sink {self.sink.name} unavailable: {exc}"
                self.metrics.archive_records.labels("failed").inc(len(batch))
                log.warning("archive sink unavailable; records kept", error=str(exc),
                            pending=len(batch), failures=self._failures)
            else:
                done = [seq for (seq, _), ok in zip(batch, accepted, strict=True) if ok]
                await self.store.archive_done(done)
                self.metrics.archive_records.labels("sent").inc(len(done))
                if len(done) < len(batch):  # some refused (throttled): kept, in order
                    self.metrics.archive_records.labels("retried").inc(len(batch) - len(done))
                    self._failures += 1
                    log.warning("archive records refused; kept for the next batch",
                                refused=len(batch) - len(done))
                else:
                    self._failures, self.degraded = 0, None
                    self._busy = len(batch) == self.cfg.batch_size
        pending, _ = await self.store.archive_pending()
        self.metrics.archive_pending.set(pending)
        if batch and not self._failures:
            log.info("archive records sent", sink=self.sink.name, count=len(batch),
                     last_seq=batch[-1][0], pending=pending)
        self.progress()


def sink_for(cfg: ArchiveConfig, clock: Clock, client: Any = None) -> Sink:
    if cfg.kind == "file":
        assert cfg.dir is not None
        return FileSink(cfg.dir, max_bytes=cfg.max_file_bytes, keep=cfg.keep_files,
                        clock=clock)
    assert cfg.stream is not None and client is not None
    return FirehoseSink(client, cfg.stream)
