"""`jpixd backup DEST` and `jpixd restore SRC`: a consistent copy of the SQLite state,
taken while the daemon runs, into a folder or `s3://bucket/prefix`, and back.

The copy is SQLite's online backup (the database as one transaction saw it, WAL
included), checked with `PRAGMA integrity_check` before it counts. A backup is named by
its time and schema version (`jpixd-20261206T010203.456Z-v14.sqlite3`), so that a restore can
pick the newest one a program can open, and `[backup] keep` of them stay.

A restore refuses while a daemon holds the state (its lock), refuses a copy that is
damaged or newer than this program, and never throws the current database away: it is
kept beside as `jpixd.sqlite3.before-restore-<time>`.

PostgreSQL (several hosts) is backed up by RDS: automated backups and snapshots.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jpixd.config import BackupConfig, Config
from jpixd.statelock import hold

_NAME = re.compile(r"^jpixd-(\d{8}T\d{6}\.\d{3}Z)-v(\d+)(?:-[a-z0-9-]+)?\.sqlite3$")


class BackupError(Exception):
    """What went wrong, for the operator (the command exits 2 with it)."""


@dataclass(frozen=True)
class Copy:
    name: str
    taken_at: str  # 20261206T010203.456Z (sorts as time)
    version: int


def parse_name(name: str) -> Copy | None:
    m = _NAME.match(name)
    return Copy(name, m.group(1), int(m.group(2))) if m else None


def backup_name(now: datetime, version: int, label: str | None = None) -> str:
    suffix = f"-{label}" if label else ""
    stamp = now.strftime("%Y%m%dT%H%M%S.") + f"{now.microsecond // 1000:03d}Z"
    return f"jpixd-{stamp}-v{version}{suffix}.sqlite3"


def schema_version(db: sqlite3.Connection) -> int:
    try:
        row = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0])


def snapshot(source: Path, into: Path) -> int:
    """The database at `source` copied to `into` as one transaction saw it; checked; its
    schema version."""
    if not source.exists():
        raise BackupError(f"there is no database at {source}")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(into)
    try:
        try:
            # All pages in one step, one read transaction: a consistent copy, and in WAL
            # mode the daemon's writers go on meanwhile. (In steps, every write by the
            # daemon would restart the copy, for ever under steady sending.)
            src.backup(dst, pages=-1)
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{source}: cannot be copied ({exc})") from None
        check(dst, into)
        return schema_version(dst)
    finally:
        src.close()
        dst.close()


def check(db: sqlite3.Connection, where: Path) -> None:
    try:
        result = db.execute("PRAGMA integrity_check").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{where}: not a database we can read ({exc})") from None
    if not result or result[0] != "ok":
        raise BackupError(f"{where}: the copy is damaged ({result[0] if result else '?'})")


# --------------------------------------------------------------------------- destinations


def _s3(url: str) -> tuple[str, str] | None:
    if not url.startswith("s3://"):
        return None
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise BackupError(f"{url}: no bucket named")
    return bucket, prefix.strip("/")


def _client(cfg: BackupConfig) -> Any:
    from aiobotocore.session import get_session

    return get_session().create_client("s3", region_name=cfg.region,
                                        endpoint_url=cfg.endpoint_url)


async def _s3_names(s3: Any, bucket: str, prefix: str) -> list[str]:
    names: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = await s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "",
                                        **token)
        names += [o["Key"].rsplit("/", 1)[-1] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return names
        token = {"ContinuationToken": page["NextContinuationToken"]}


def _key(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _oldest_beyond(names: list[str], keep: int) -> list[str]:
    copies = sorted((c for n in names if (c := parse_name(n))), key=lambda c: c.taken_at)
    return [c.name for c in copies[:-keep]] if len(copies) > keep else []


async def backup(cfg: Config, dest: str, now: datetime, *, label: str | None = None) -> str:
    """Copy the state to `dest` (a folder or s3://bucket/prefix); where it went."""
    if cfg.postgres:
        raise BackupError("the database is PostgreSQL: it is backed up by RDS (automated "
                          "backups and snapshots; README: Several hosts)")
    s3 = _s3(dest)
    folder = Path(dest) if s3 is None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder or cfg.state_dir) as tmp:
        made = Path(tmp) / "copy.sqlite3"
        version = snapshot(cfg.database_path, made)
        name = backup_name(now, version, label)
        if folder is not None:
            made.replace(folder / name)  # the same filesystem: never half a copy
            for old in _oldest_beyond([p.name for p in folder.iterdir()], cfg.backup.keep):
                (folder / old).unlink(missing_ok=True)
            return str(folder / name)
        assert s3 is not None
        bucket, prefix = s3
        async with _client(cfg.backup) as client:
            with made.open("rb") as body:
                await client.put_object(Bucket=bucket, Key=_key(prefix, name), Body=body,
                                        ServerSideEncryption="aws:kms")
            for old in _oldest_beyond(await _s3_names(client, bucket, prefix),
                                      cfg.backup.keep):
                await client.delete_object(Bucket=bucket, Key=_key(prefix, old))
        return f"s3://{bucket}/{_key(prefix, name)}"


def _newest(names: list[str], known: int, where: str) -> str:
    copies = [c for n in names if (c := parse_name(n))]
    if not copies:
        raise BackupError(f"{where}: no jpixd backup there")
    usable = [c for c in copies if c.version <= known]
    if not usable:
        raise BackupError(f"{where}: every backup there is of a newer schema than this "
                          f"program knows ({known}); restore it with the release that "
                          "made it")
    return max(usable, key=lambda c: c.taken_at).name


def _fetch_local(path: Path, into: Path, known: int) -> str:
    if path.is_dir():
        path = path / _newest([p.name for p in path.iterdir()], known, str(path))
    if not path.is_file():
        raise BackupError(f"{path}: no such backup")
    shutil.copyfile(path, into)
    return path.name


async def _fetch(cfg: Config, src: str, into: Path, known: int) -> str:
    """The backup `src` names (a file, the newest in a folder or under an S3 prefix, or
    one S3 object) copied to `into`; its name."""
    s3 = _s3(src)
    if s3 is None:
        return _fetch_local(Path(src), into, known)
    bucket, key = s3
    async with _client(cfg.backup) as client:
        if parse_name(key.rsplit("/", 1)[-1]) is None:
            key = _key(key, _newest(await _s3_names(client, bucket, key), known, src))
        try:
            got = await client.get_object(Bucket=bucket, Key=key)
        except client.exceptions.NoSuchKey:
            raise BackupError(f"{src}: no such backup") from None
        async with got["Body"] as stream:
            with into.open("wb") as out:
                while chunk := await stream.read(1 << 20):
                    out.write(chunk)
    return key.rsplit("/", 1)[-1]


async def restore(cfg: Config, src: str, now: datetime, known: int) -> tuple[str, Path | None]:
    """Put the backup `src` in place of the state's database, which is kept beside.
    Refused while a daemon holds the state. (name restored, where the old one was kept)"""
    if cfg.postgres:
        raise BackupError("the database is PostgreSQL: restore an RDS snapshot instead")
    target = cfg.database_path
    target.parent.mkdir(parents=True, exist_ok=True)
    with hold(cfg.state_dir, now), tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        fetched = Path(tmp) / "restore.sqlite3"
        name = await _fetch(cfg, src, fetched, known)
        db = sqlite3.connect(fetched)
        try:
            check(db, fetched)
            version = schema_version(db)
        finally:
            db.close()
        if version > known:
            raise BackupError(f"{name} is at schema version {version}, newer than this "
                              f"program knows ({known})")
        kept = None
        if target.exists():
            kept = target.with_name(f"{target.name}.before-restore-"
                                    f"{now.strftime('%Y%m%dT%H%M%SZ')}")
            snapshot(target, kept)
        for side in ("-wal", "-shm"):  # the old database's, not the copy's
            target.with_name(target.name + side).unlink(missing_ok=True)
        fetched.replace(target)
        return name, kept
