"""A real `jpixd run` process: systemd notify, health, SIGTERM, and state across restarts."""

from __future__ import annotations

import json
import signal
import socket
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN, DaemonProcess, base_mapping, toml_dumps

Start = Callable[..., DaemonProcess]


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    # A short path: AF_UNIX paths are limited to about 107 bytes.
    folder = tempfile.mkdtemp(prefix="jpx", dir="/tmp")
    path = f"{folder}/notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    yield sock, path
    sock.close()


def receive_until(sock: socket.socket, wanted: str) -> list[str]:
    """Datagrams up to and including `wanted` (the socket's timeout bounds the wait)."""
    seen: list[str] = []
    while True:
        try:
            msg = sock.recv(4096).decode()
        except TimeoutError:
            raise AssertionError(f"no {wanted!r} from the daemon; got {seen}") from None
        seen.append(msg)
        if msg == wanted:
            return seen


def http(url: str, method: str = "GET", token: str | None = ADMIN_TOKEN) -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "jpixd.toml"
    path.write_text(toml_dumps(base_mapping(tmp_path)), encoding="utf-8")
    return path


def test_systemd_notify_health_and_sigterm(tmp_path: Path, daemon_process: Start,
                                           notify_socket: tuple[socket.socket, str]) -> None:
    sock, sock_path = notify_socket
    proc = daemon_process(["run", "--config", str(config_file(tmp_path))],
                          {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "200000"})
    listening = proc.wait_for_event("http listening")
    base = f"http://{listening['addresses'][0]}"

    assert receive_until(sock, "READY=1") == ["READY=1"]
    # Watchdog pings follow at half of WATCHDOG_USEC while the loops are fresh.
    assert receive_until(sock, "WATCHDOG=1")[-1] == "WATCHDOG=1"
    status, body = http(base + "/healthz")
    assert status == 200 and body == {"ok": True}
    status, body = http(base + "/readyz")
    assert status == 200 and body["ready"] is True
    assert body["loops"]["housekeeping"]["up"] is True

    proc.proc.send_signal(signal.SIGTERM)
    assert "STOPPING=1" in receive_until(sock, "STOPPING=1")
    assert proc.finish(timeout=15) == 0
    # Subscribers' addresses live in the database: not world-readable, whatever the
    # umask of the shell that started jpixd (security probe L7).
    for path in (tmp_path / "state").iterdir():
        assert path.stat().st_mode & 0o007 == 0, path
    events = [json.loads(line).get("event") for line in proc.lines if line.startswith("{")]
    assert "signal received" in events and "shutting down" in events


def test_pause_survives_a_restart(tmp_path: Path, daemon_process: Start) -> None:
    cfg = config_file(tmp_path)
    first = daemon_process(["run", "--config", str(cfg)])
    base = f"http://{first.wait_for_event('jpixd ready') and first_address(first)}"
    status, body = http(base + "/admin/v1/sending/pause", "POST")
    assert status == 200 and body["paused"] is True and body["actor"] == "admin"
    first.proc.send_signal(signal.SIGTERM)
    assert first.finish() == 0

    second = daemon_process(["run", "--config", str(cfg)])
    second.wait_for_event("jpixd ready")
    base = f"http://{first_address(second)}"
    status, body = http(base + "/admin/v1/status")
    assert status == 200 and body["sending"]["paused"] is True
    status, body = http(base + "/admin/v1/sending/resume", "POST")
    assert status == 200 and body["paused"] is False and body["window_start"]
    second.proc.send_signal(signal.SIGINT)
    assert second.finish() == 0


def first_address(proc: DaemonProcess) -> str:
    for line in proc.lines:
        if '"http listening"' in line:
            return str(json.loads(line)["addresses"][0])
    raise AssertionError("no http listening line")


@pytest.mark.parametrize(("override", "said"), [
    ({"shutdown_timeout": "forever"}, "shutdown_timeout: 'forever' is not a duration"),
    ({"state_dir": "/proc/jpixd-state"}, "state_dir"),  # unwritable: said, no traceback
])
def test_a_bad_config_stops_the_process_before_it_starts(
        tmp_path: Path, daemon_process: Start, override: dict[str, str], said: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml_dumps(base_mapping(tmp_path, **override)))
    proc = daemon_process(["run", "--config", str(path)])
    assert proc.finish() == 2
    output = "".join(proc.lines)
    assert said in output and "Traceback" not in output


def test_a_second_daemon_on_the_same_state_refuses_to_start(tmp_path: Path,
                                                            daemon_process: Start) -> None:
    cfg = config_file(tmp_path)  # port 0: the second would listen on a port of its own
    first = daemon_process(["run", "--config", str(cfg)])
    first.wait_for_event("jpixd ready")
    second = daemon_process(["run", "--config", str(cfg)])
    assert second.finish() == 2
    said = "".join(second.lines)
    assert "in use by another jpixd" in said and f"pid {first.proc.pid}" in said
    first.proc.send_signal(signal.SIGTERM)
    assert first.finish() == 0




def test_sighup_does_not_kill_the_daemon(tmp_path: Path, daemon_process: Start) -> None:
    proc = daemon_process(["run", "--config", str(config_file(tmp_path))])
    proc.wait_for_event("jpixd ready")
    proc.proc.send_signal(signal.SIGHUP)  # the same file: a reload that changes nothing
    assert proc.wait_for_event("configuration reloaded")["changed"] == []
    status, _ = http(f"http://{first_address(proc)}/healthz")
    assert status == 200
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.finish() == 0


def test_a_damaged_database_is_refused_before_ready(tmp_path: Path,
                                                    daemon_process: Start) -> None:
    cfg = config_file(tmp_path)
    first = daemon_process(["run", "--config", str(cfg)])
    first.wait_for_event("jpixd ready")
    first.proc.send_signal(signal.SIGTERM)
    assert first.finish() == 0
    db = tmp_path / "state" / "jpixd.sqlite3"
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")  # the page size, from the file's header
    for start in range(page, len(data), page):  # every b-tree page header but the first
        data[start:start + 8] = b"\xff" * 8
    db.write_bytes(bytes(data))
    second = daemon_process(["run", "--config", str(cfg)])
    assert second.finish() == 1
    said = "".join(second.lines)
    assert "damaged" in said or "malformed" in said or "not a database" in said
    assert "Traceback" not in said


def test_sighup_reloads_sources_and_refuses_a_broken_config(
        tmp_path: Path, daemon_process: Start) -> None:
    """Issue 13: SIGHUP killed the daemon; now a source added and one removed take effect,
    /readyz stays 200, and a broken config is refused while the daemon runs on."""
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    for name in ("a", "b"):
        (feeds / f"{name}.json").write_text(json.dumps({"notices": [{
            "id": f"{name}-1", "kind": "failure", "title": f"東京都で故障 {name}"}]}))

    def write(*names: str, broken: bool = False) -> Path:
        sources = [{"name": n, "kind": "json", "carrier": "east", "interval": "1h",
                    "url": (feeds / f"{n}.json").as_uri()} for n in names]
        mapping = base_mapping(tmp_path, sources=sources, logging={
            "format": "json", "level": "info"})
        if broken:
            mapping["shutdown_timeout"] = "forever"
        path = tmp_path / "jpixd.toml"
        path.write_text(toml_dumps(mapping), encoding="utf-8")
        return path

    proc = daemon_process(["run", "--config", str(write("a"))])
    proc.wait_for_event("jpixd ready")
    base = f"http://{first_address(proc)}"
    write("b")
    proc.proc.send_signal(signal.SIGHUP)
    line = proc.wait_for_event("configuration reloaded")
    assert line["changed"] == ["sources"] and line["needs_restart"] == []
    proc.wait_until(lambda events: any(e.get("event") == "feed polled" and
                                       e.get("source") == "b" for e in events))
    status, body = http(base + "/admin/v1/sources")
    assert status == 200 and [s["name"] for s in body["items"]] == ["b"]
    assert http(base + "/readyz")[0] == 200

    write("b", broken=True)
    proc.proc.send_signal(signal.SIGHUP)
    refused = proc.wait_for_event("configuration reload refused: the running configuration "
                                  "stays")
    assert any("shutdown_timeout" in e for e in refused["errors"])
    assert http(base + "/readyz")[0] == 200
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.finish() == 0
