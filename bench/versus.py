"""jpixd beside rss2email (issue 13): the same 200-item feed served on loopback, the same
SMTP sink, each from process start to the last mail received. rss2email is set up first
(`r2e new`, `r2e add`) and jpixd too (its subscriber imported), untimed; then each runs
three times from a fresh state. Figures only: what jpixd does more (a database, fan-out,
a daemon's start-up) is part of what is measured.
"""

from __future__ import annotations

import compileall
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

N = 200
TIMELINE = False
BIN = Path(sys.executable).parent


class Sink:
    def __init__(self) -> None:
        self.count = 0
        self.done = threading.Event()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.count += 1
            if self.count >= N:
                self.done.set()
        return "250 OK"

    def reset(self) -> None:
        with self.lock:
            self.count = 0
            self.done.clear()


def feed() -> str:
    items = "".join(
        f"<item><title>【故障】東京都の一部でご利用しづらい状況について（No.{i}）</title>"
        f"<link>http://example.jp/f/{i}</link><guid>f-{i}</guid>"
        f"<description>発生日時 2026年11月28日 9時{i % 60:02d}分頃 東京都新宿区の一部</description>"
        "<pubDate>Sat, 28 Nov 2026 09:30:00 +0900</pubDate></item>" for i in range(N))
    return ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>bench</title><link>http://example.jp/</link><description>d</description>"
            f"{items}</channel></rss>")


def serve(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(folder), **kw)

        def log_message(self, *a: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/feed.xml"


def r2e_run(work: Path, url: str, port: int, sink: Sink) -> float:
    cfg, data = work / "r2e.cfg", work / "r2e.json"
    cfg.unlink(missing_ok=True)
    data.unlink(missing_ok=True)
    r2e = [str(BIN / "r2e"), "-c", str(cfg), "-d", str(data)]
    subprocess.run([*r2e, "new", "noc@isp.example.jp"], check=True, capture_output=True)
    settings = {"from": "noc@example.jp", "email-protocol": "smtp",
                "smtp-server": "127.0.0.1", "smtp-port": str(port), "smtp-ssl": "False",
                "smtp-auth": "False"}
    text = cfg.read_text(encoding="utf-8")
    for key, value in settings.items():  # r2e writes its own file; ours are its values
        text = re.sub(rf"^{re.escape(key)} = .*$", f"{key} = {value}", text, flags=re.M)
    cfg.write_text(text, encoding="utf-8")
    subprocess.run([*r2e, "add", "bench", url], check=True, capture_output=True)
    sink.reset()
    t0 = time.perf_counter()
    subprocess.run([*r2e, "run"], check=True, capture_output=True)
    sink.done.wait(60)
    return time.perf_counter() - t0


def jpixd_run(work: Path, url: str, port: int, sink: Sink) -> float:
    state = work / "state"
    shutil.rmtree(state, ignore_errors=True)
    (work / "token").write_text("bench-admin-token-0123456789\n")
    (work / "subs.csv").write_text("email,name\nnoc@isp.example.jp,運用\n", encoding="utf-8")
    config = work / "jpixd.toml"
    config.write_text(f'''state_dir = "{state}"
[http]
listen = "127.0.0.1:0"
admin_token_file = "{work / "token"}"
[logging]
format = "json"
level = "warning"
[mail]
from = "noc@example.jp"
transport = "smtp"
[mail.smtp]
host = "127.0.0.1"
port = {port}
starttls = false
[mail.ses]
max_send_rate = 100000
[[sources]]
name = "bench"
kind = "rss"
carrier = "east"
url = "{url}"
interval = "1h"
send_on_first_poll = true
''', encoding="utf-8")
    jpixd = [str(BIN / "jpixd")]
    subprocess.run([*jpixd, "subscribers", "import", str(work / "subs.csv"), "--config",
                    str(config)], check=True, capture_output=True)
    sink.reset()
    t0 = time.perf_counter()
    log = (work / "jpixd.log").open("w")
    proc = subprocess.Popen([*jpixd, "run", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        sink.done.wait(60)
        return time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        if TIMELINE:
            print((work / "jpixd.log").read_text()[:3000])  # noqa: T201


def run(parts: list[str]) -> None:
    if shutil.which("r2e", path=str(BIN)) is None:
        print("versus: rss2email is not installed (pip install rss2email)")  # noqa: T201
        return
    # An installed jpixd (a wheel) has its bytecode compiled at install time, as
    # rss2email's has; this checkout may not (PYTHONDONTWRITEBYTECODE), and compiling
    # 80 modules at every start is not what production does.
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "jpixd"), quiet=1,
                           force=False)
    sink = Sink()
    with socket.socket() as probe:  # a free port for the sink
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "feed.xml").write_text(feed(), encoding="utf-8")
        httpd, url = serve(work)
        try:
            figures = {"rss2email": [r2e_run(work, url, port, sink) for _ in range(3)],
                       "jpixd": [jpixd_run(work, url, port, sink) for _ in range(3)]}
        finally:
            httpd.shutdown()
            controller.stop()
    for name, runs in figures.items():
        print(f"versus[{name}]: mails={N} seconds_min={min(runs):.2f} "  # noqa: T201
              f"median={statistics.median(runs):.2f} runs={[round(r, 2) for r in runs]}")
