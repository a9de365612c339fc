"""A real `jpixd run` fed hostile input at every boundary for a while (issue 12): feed
bodies of every kind (the corpus, mutated), SQS messages, admin JSON bodies and query
strings, CSV files and form posts. Throughout: the process never exits, no loop
restarts, /readyz stays 200, every bad unit is quarantined or answered 4xx, and the good
units beside the bad ones are processed."""

from __future__ import annotations

import asyncio
import json
import random
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
from aiobotocore.session import get_session

from tests.conftest import ADMIN_TOKEN, DaemonProcess, base_mapping, free_port, toml_dumps
from tests.sesnotes import bounce, sns

CORPUS = Path(__file__).parent / "corpus"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SEED = 20261129
ROUNDS = 12  # mutated bodies per source kind
# The log line each SQS message ends with, whatever it held.
HANDLED = {"mail event recorded", "SQS message quarantined",
           "unit of work failed: quarantined, the loop goes on",
           "SQS message already recorded (a redelivery)"}


def mutations(rng: random.Random, data: bytes) -> Iterator[bytes]:
    """Ways real and hostile input goes wrong, applied to a page that parses."""
    hostile = [b"\x00", b"\x1b$B", "第99999999999999999999報".encode(), b"\n" * 5000,
               "9999年12月31日 24:00".encode(), "0001年1月1日".encode(), b"1" * 5000,
               b"<![CDATA[", b"&#0;", b"]]>", "\ud800".encode("utf-8", "surrogatepass"),
               b'encoding="undefined"', b"<" * 1000, b"[" * 2000, b"\xff\xfe"]
    for _ in range(ROUNDS):
        body = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            choice = rng.randrange(4)
            at = rng.randrange(len(body) + 1)
            if choice == 0:
                body[at:at] = rng.choice(hostile)
            elif choice == 1 and body:
                del body[at:at + rng.randint(1, 200)]
            elif choice == 2 and body:
                body[at:at + 1] = bytes([rng.randrange(256)])
            else:
                body = body[:at]  # truncated
        yield bytes(body)


class Daemon:
    def __init__(self, proc: DaemonProcess, base: str) -> None:
        self.proc, self.base = proc, base

    async def ready(self, http: aiohttp.ClientSession) -> None:
        assert self.proc.proc.poll() is None, "the daemon exited"
        async with http.get(self.base + "/readyz") as r:
            assert r.status == 200, await r.text()


def good_json(tag: str) -> bytes:
    return json.dumps({"notices": [{"id": f"good-{tag}", "kind": "failure",
                                    "title": f"東京都で故障 {tag}", "prefectures": ["13"]}]},
                      ensure_ascii=False).encode()


async def test_hostile_input_at_every_boundary(
        tmp_path: Path, moto_url: str, daemon_process: Callable[..., DaemonProcess]) -> None:
    rng = random.Random(SEED)
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    pages = {  # source name → (kind, file, corpus page it starts from)
        "json": ("json", "feed.json", "json-feed.json"),
        "rss": ("rss", "feed.xml", "rss-typhoon.xml"),
        "east": ("ntt-east", "east.html", "east-construction-list-sjis.html"),
        "west": ("ntt-west", "west.xml", "west-rss-construction.xml"),
    }
    for _kind, name, page in pages.values():
        (feeds / name).write_bytes((CORPUS / page).read_bytes())
    for detail in CORPUS.glob("west-const-*.html"):  # West's details, beside its RSS
        (feeds / detail.name).write_bytes(detail.read_bytes())
    west = (feeds / "west.xml").read_bytes().replace(
        b"https://www.info-construction.ntt-west.co.jp/info-report/detail/",
        feeds.as_uri().encode() + b"/")
    (feeds / "west.xml").write_bytes(west)

    kw: dict[str, Any] = {"region_name": "ap-northeast-1", "endpoint_url": moto_url}
    async with get_session().create_client("sqs", **kw) as sqs:
        queue = (await sqs.create_queue(QueueName=f"fuzz-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
        sources = [{"name": n, "kind": k, "carrier": "west" if k == "ntt-west" else "east",
                    "url": (feeds / f).as_uri(), "interval": "1h", "detail_delay": "0s",
                    "send_on_first_poll": True} for n, (k, f, _) in pages.items()]
        cfg = base_mapping(tmp_path, sources=sources, bounces={
            "queue_url": queue, "region": "ap-northeast-1", "endpoint_url": moto_url,
            "wait_time": "1s", "visibility_timeout": "5s"})
        public_port = free_port()
        (tmp_path / "web-keys").write_text("f" * 40 + "\n")
        cfg["http"] = {**cfg["http"], "public_listen": f"127.0.0.1:{public_port}"}
        cfg["web"] = {"base_url": f"http://127.0.0.1:{public_port}",
                      "secret_keys_file": str(tmp_path / "web-keys"),
                      "posts_per_client_hour": 100000}
        path = tmp_path / "jpixd.toml"
        path.write_text(toml_dumps(cfg), encoding="utf-8")
        proc = daemon_process(["run", "--config", str(path)])
        listening = await asyncio.to_thread(proc.wait_for_event, "http listening")
        d = Daemon(proc, f"http://{listening['addresses'][0]}")
        await asyncio.to_thread(proc.wait_for_event, "jpixd ready")

        def first_round(events: list[dict[str, Any]]) -> bool:  # the loop's own polls
            return len({e.get("source") for e in events
                        if e.get("event") == "feed polled"}) == len(pages)

        await asyncio.to_thread(proc.wait_until, first_round, 60)

        async with aiohttp.ClientSession(headers=AUTH) as http:
            await d.ready(http)
            await fuzz_feeds(http, d, rng, feeds, pages)
            await fuzz_sqs(http, d, sqs, queue, rng)
            await fuzz_admin(http, d, rng)
            await fuzz_forms(http, d, rng)
            await fuzz_pages(http, d, f"http://127.0.0.1:{public_port}", rng)
            fuzz_csv(tmp_path, path, rng)
            await d.ready(http)
            async with http.get(d.base + "/metrics") as r:
                text = await r.text()
            restarts = [ln for ln in text.splitlines()
                        if ln.startswith("jpixd_loop_restarts_total{")]
            assert restarts and all(ln.endswith(" 0.0") for ln in restarts), restarts
            async with http.get(d.base + "/admin/v1/notices", params={"limit": "1000"}) as r:
                ids = {n["external_id"] for n in (await r.json())["items"]}
            assert {f"good-{i}" for i in range(ROUNDS)} <= ids  # good beside bad
        proc.proc.terminate()
        assert await asyncio.to_thread(proc.finish, 30) == 0

    db = sqlite3.connect(tmp_path / "state" / "jpixd.sqlite3")
    quarantined = dict(db.execute("SELECT origin, COUNT(*) FROM quarantine GROUP BY origin"))
    db.close()
    assert quarantined.get("sqs", 0) >= ROUNDS  # every poison message kept, then deleted


async def fuzz_feeds(http: aiohttp.ClientSession, d: Daemon, rng: random.Random,
                     feeds: Path, pages: dict[str, tuple[str, str, str]]) -> None:
    seen: dict[str, int] = {}
    for name, (_kind, file, _page) in pages.items():
        original = (feeds / file).read_bytes()
        for i, body in enumerate(mutations(rng, original)):
            (feeds / file).write_bytes(body)
            async with http.post(f"{d.base}/admin/v1/sources/{name}/poll") as r:
                assert r.status == 200, await r.text()
                report = await r.json()
            assert report["result"] in ("ok", "parse_error", "layout_changed", "error"), report
            seen[report["result"]] = seen.get(report["result"], 0) + 1
            seen["quarantined"] = seen.get("quarantined", 0) + report["counts"].get(
                "quarantined", 0)
            if name == "json":  # a good feed beside the bad ones is read every time
                (feeds / file).write_bytes(good_json(str(i)))
                async with http.post(f"{d.base}/admin/v1/sources/{name}/poll") as r:
                    good = await r.json()
                    assert good["result"] == "ok", (i, report, good, body[:300])
            await d.ready(http)
        (feeds / file).write_bytes(original)
    print("feed fuzz outcomes:", seen)  # noqa: T201  (shown with -s: what was exercised)
    # The mutations did reach the error paths, not only pages that still parse.
    assert seen.get("ok", 0) and seen.get("parse_error", 0) and seen.get("quarantined", 0)


async def fuzz_sqs(http: aiohttp.ClientSession, d: Daemon, sqs: Any, queue: str,
                   rng: random.Random) -> None:
    good = sns(bounce(["good@isp.example.jp"], feedback="fb-good"))
    bodies = [good]
    for i in range(ROUNDS):
        note = bounce([f"r{i}@isp.example.jp"], feedback=f"fb-{i}")
        choice = i % 4
        if choice == 0:
            note["bounce"]["timestamp"] = rng.choice(["9999-12-31T23:59:59-23:59",
                                                      "0001-01-01T00:00:00+09:00"])
            bodies.append(sns(note))
        elif choice == 1:
            bodies.append('{"Type": "Notification", "x": ' + "9" * 5000 + "}")
        elif choice == 2:
            raw = bytearray(sns(note).encode())
            del raw[rng.randrange(len(raw)):]
            bodies.append(raw.decode("utf-8", "replace") or "{")
        else:
            note["bounce"]["bouncedRecipients"][0]["emailAddress"] = "@@@\r\nBcc: x@y.jp"
            bodies.append(sns(note))
    for body in bodies:
        await sqs.send_message(QueueUrl=queue, MessageBody=body)

    def handled(events: list[dict[str, Any]]) -> bool:  # one of these per message
        return sum(e.get("event") in HANDLED for e in events) >= len(bodies)

    await asyncio.to_thread(d.proc.wait_until, handled, 90)
    attrs = (await sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"]))[
        "Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    async with http.get(d.base + "/admin/v1/suppressions") as r:
        emails = [s["email"] for s in (await r.json())["items"]]
    assert "good@isp.example.jp" in emails
    await d.ready(http)


async def fuzz_admin(http: aiohttp.ClientSession, d: Daemon, rng: random.Random) -> None:
    values: list[Any] = [None, True, -1, 2**64, 10**400, 1.5, "", "x" * 300, "\u0000",
                         "\ud800", [], {}, ["東京都"] * 1000, {"a": [1]}, "ﾃｽﾄ", "١"]
    paths = ["/subscribers", "/notices", "/deliveries", "/bounces", "/suppressions",
             "/tickets", "/preview"]
    for i in range(60):
        fields = ["email", "name", "organization", "carriers", "prefectures", "kinds",
                  "services", "windows", "charset", "status", "failure_respects_windows"]
        body = {f: rng.choice(values) for f in rng.sample(fields, rng.randint(1, 5))}
        if i % 3 == 0:
            body["email"] = f"ok{i}@isp.example.jp"
        text = json.dumps(body, ensure_ascii=False) if i % 7 else "{" * rng.randint(1, 5000)
        async with http.post(d.base + "/admin/v1/subscribers", data=text.encode(
                "utf-8", "surrogatepass"), headers={"Content-Type": "application/json"}) as r:
            assert r.status in (201, 400, 409), (r.status, await r.text())
        query = {rng.choice(["limit", "offset", "since", "state", "notice", "q", "kind",
                             "prefecture", "subscriber"]): str(rng.choice(values))}
        async with http.get(d.base + "/admin/v1" + rng.choice(paths), params=query) as r:
            assert r.status < 500, (query, r.status, await r.text())
    await d.ready(http)


async def fuzz_forms(http: aiohttp.ClientSession, d: Daemon, rng: random.Random) -> None:
    async with aiohttp.ClientSession() as anonymous:
        for _ in range(40):
            token = "".join(rng.choice("0123456789.abcdef²١%\u00e9") for _ in
                            range(rng.randint(0, 80)))
            form = {"token": token, "List-Unsubscribe": rng.choice(["One-Click", "x", ""])}
            async with anonymous.post(d.base + "/unsubscribe", data=form) as r:
                assert r.status < 500, (token, r.status)
            async with anonymous.post(d.base + "/unsubscribe", params={"token": token}) as r:
                assert r.status < 500, (token, r.status)
    await d.ready(http)


async def fuzz_pages(http: aiohttp.ClientSession, d: Daemon, public: str,
                     rng: random.Random) -> None:
    """The public pages and the console's login, as strangers use them: with and without
    a valid CSRF token, with hostile values, tokens and query strings."""
    values = ["", "x" * 5000, "\u0000\r\nBcc: x@evil", "<script>", "ﾃｽﾄ", "١", "%00",
              "a@b.c", "東京都", "99", "east", "construction", "day", "utf-8", "\ud800"]
    fields = ["email", "name", "organization", "carriers", "prefectures", "kinds",
              "services", "windows", "charset", "action", "t", "List-Unsubscribe"]
    token_chars = "cmuk0123456789.-_ABCxyz%²١"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(public + "/s/") as r:
            text = await r.text()
            assert r.status == 200
        m = re.search(r'name="csrf" value="([^"]+)"', text)
        assert m is not None
        for i in range(120):
            form = [(rng.choice(fields), rng.choice(values)) for _ in range(rng.randint(0, 8))]
            if i % 2:
                form.append(("csrf", m.group(1)))
            token = "".join(rng.choice(token_chars) for _ in range(rng.randint(0, 60)))
            path = rng.choice(["/s/", "/s/manage", "/s/confirm", "/s/link", "/unsubscribe"])
            body = "&".join(f"{k}={v}" for k, v in form).encode("utf-8", "surrogatepass")
            async with browser.post(public + path, params={"t": token}, data=body, headers={
                    "Content-Type": "application/x-www-form-urlencoded"}) as r:
                assert r.status < 500, (path, form, token, r.status)
            printable = [v for v in values if v != "\ud800"]  # a URL cannot carry one
            query = {rng.choice(["carrier", "prefecture", "kind", "t"]): rng.choice(printable)}
            page = rng.choice(["/notices", "/notices.atom", "/notices.ics", "/s/manage",
                               "/s/calendar.ics", f"/notices/{rng.choice(printable)}"])
            async with browser.get(public + page, params=query) as r:
                assert r.status < 500, (page, query, r.status)
            login = f"token={rng.choice(values)}".encode("utf-8", "surrogatepass")
            async with browser.post(d.base + "/console/login", data=login, headers={
                    "Content-Type": "application/x-www-form-urlencoded"}) as r:
                assert r.status in (400, 401, 429), r.status
        async with browser.get(public + "/notices") as r:
            assert r.status == 200
    await d.ready(http)


def fuzz_csv(tmp_path: Path, config: Path, rng: random.Random) -> None:
    base = "email,name,prefectures\nok@isp.example.jp,山田,東京都\n".encode()
    for i, body in enumerate(mutations(rng, base)):
        for codec in ("utf-8", "cp932", "euc_jp"):
            try:
                data = body.decode("utf-8", "replace").encode(codec, "replace")
            except LookupError:
                continue
            csv = tmp_path / f"fuzz-{i}-{codec}.csv"
            csv.write_bytes(data)
            out = subprocess.run([sys.executable, "-m", "jpixd", "subscribers", "import",
                                  str(csv), "--dry-run", "--config", str(config)],
                                 capture_output=True, text=True, timeout=60, check=False)
            assert out.returncode in (0, 2), out.stderr[-2000:]
            assert "Traceback" not in out.stderr
