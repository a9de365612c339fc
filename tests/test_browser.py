"""The pages in a real browser (issue 14): Debian's headless Chromium driven by Selenium,
against a real `jpixd run` child. The story a subscriber lives, then an operator's pause.

Every page is saved as a screenshot under test-artifacts/screenshots/ (or
$JPIXD_TEST_ARTIFACTS): look at them.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from jpixd.web.links import LinkBuilder, Signer
from tests.conftest import ADMIN_TOKEN, DaemonProcess, free_port, toml_dumps
from tests.webharness import link_in

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="chromium and chromedriver are not installed (scripts/install-test-tools.sh "
           "installs them as root)")

ROOT = Path(__file__).resolve().parent.parent
SHOTS = Path(os.environ.get("JPIXD_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "screenshots"
EMAIL = "noc@isp.example.jp"


class Browser:
    def __init__(self, width: int = 1280, height: int = 1000, *, phone: bool = False) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM or ""
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", f"--window-size={width},{height}",
                    "--lang=ja-JP", "--no-first-run", "--disable-extensions"):
            opts.add_argument(arg)
        if phone:  # a window cannot be narrower than ~500 px: emulate the device instead
            opts.add_experimental_option("mobileEmulation", {"deviceMetrics": {
                "width": width, "height": height, "pixelRatio": 2.0}})
        self.phone = (width, height) if phone else None
        self.driver = webdriver.Chrome(service=Service(DRIVER or ""), options=opts)
        self.driver.set_page_load_timeout(20)
        # A click that submits a form returns before the next page is there: finding an
        # element waits for it (up to 10 s) instead of failing on the old page.
        self.driver.implicitly_wait(10)

    def shot(self, name: str) -> None:
        """A full-page screenshot (the window grown to the page's height)."""
        d = self.driver
        height = min(max(int(d.execute_script(
            "return document.documentElement.scrollHeight")), 600), 6000)
        SHOTS.mkdir(parents=True, exist_ok=True)
        if self.phone is None:
            d.set_window_size(d.get_window_size()["width"], height)
            assert d.save_screenshot(str(SHOTS / f"{name}.png"))
            return
        # An emulated phone's screen is as tall as the device says: made as tall as the
        # page for the picture, then the phone again (the first screen is what it was).
        width, screen = self.phone
        for tall in (height, screen):
            d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": tall, "deviceScaleFactor": 2, "mobile": True})
            if tall == height:
                assert d.save_screenshot(str(SHOTS / f"{name}.png"))

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def submit(self, selector: str) -> None:
        """Click a button that loads another page, and wait until that page is there
        (the old page's root gone stale), not just until the click is sent."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        old = self.driver.find_element(By.TAG_NAME, "html")
        self.css(selector).click()

        def gone(_: Any) -> bool:
            # A stale element, or (chromedriver, mid-navigation) "node does not belong to
            # the document": either way the old page is no longer there.
            try:
                old.tag_name  # noqa: B018
            except WebDriverException:
                return True
            return False

        WebDriverWait(self.driver, 15).until(gone)
        WebDriverWait(self.driver, 15).until(
            lambda d: d.execute_script("return document.readyState") == "complete")

    def quit(self) -> None:
        self.driver.quit()


@pytest.fixture(scope="module", autouse=True)
def fresh_screenshots() -> None:
    """This run's screenshots only: none left over from an earlier run to mislead."""
    shutil.rmtree(SHOTS, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[Browser]:
    b = Browser()
    try:
        yield b
    finally:
        b.quit()


def _feed(path: Path, notices: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps({"notices": notices}, ensure_ascii=False), encoding="utf-8")


def _admin(base: str, method: str, path: str) -> Any:
    req = urllib.request.Request(base + "/admin/v1" + path, method=method,
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _mails(outbox: Path) -> list[EmailMessage]:
    out = []
    for p in sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
        msg = message_from_bytes(p.read_bytes(), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        if EMAIL in str(msg["To"]):
            out.append(msg)
    return out


@pytest.fixture
def running(tmp_path: Path,
            daemon_process: Callable[..., DaemonProcess]) -> Iterator[dict[str, Any]]:
    port = free_port()
    (tmp_path / "token").write_text(ADMIN_TOKEN + "\n")
    (tmp_path / "web-keys").write_text("w" * 40 + "\n")
    feed = tmp_path / "feed.json"
    _feed(feed, [])
    config = tmp_path / "jpixd.toml"
    config.write_text(toml_dumps({
        "state_dir": str(tmp_path / "state"), "shutdown_timeout": "5s",
        "http": {"listen": "127.0.0.1:0", "admin_token_file": str(tmp_path / "token"),
                 "public_listen": f"127.0.0.1:{port}"},
        "web": {"base_url": f"http://127.0.0.1:{port}",
                "secret_keys_file": str(tmp_path / "web-keys")},
        "mail": {"from": "notice@example.jp", "from_name": "工事・故障情報",
                 "transport": "file", "file": {"dir": str(tmp_path / "outbox")}},
        "logging": {"format": "json", "level": "info"},
        "sources": [{"name": "local", "kind": "json", "carrier": "east",
                     "url": feed.as_uri(), "interval": "1h", "send_on_first_poll": True}],
    }), encoding="utf-8")
    p = daemon_process(["run", "--config", str(config)])
    listening = p.wait_for_event("http listening")
    p.wait_for_event("jpixd ready")
    yield {"proc": p, "admin": f"http://{listening['addresses'][0]}",
           "public": f"http://127.0.0.1:{port}", "feed": feed, "outbox": tmp_path / "outbox"}


def test_a_subscriber_signs_up_changes_settings_and_leaves(
        browser: Browser, running: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    p: DaemonProcess = running["proc"]
    public, admin, feed, outbox = (running["public"], running["admin"], running["feed"],
                                   running["outbox"])
    d = browser.driver

    # The board, empty, and the sign-up form.
    d.get(public + "/notices")
    assert "現在、発生中の故障はありません" in d.page_source
    browser.shot("01-board-empty")
    d.get(public + "/s/")
    browser.shot("02-signup")
    browser.css("#email").send_keys(EMAIL)
    browser.css("#name").send_keys("運用 太郎")
    browser.css("#organization").send_keys("例ISP株式会社")
    # Carriers: NTT East only. Region: all of Kanto, with the script's select-all box.
    browser.css('input[name="carriers"][value="west"]').click()
    kanto = browser.css('input[data-region-all="r2"]')
    assert kanto.is_displayed()  # the script showed it
    kanto.click()
    ticked = [e.get_attribute("value") for e in d.find_elements(
        By.CSS_SELECTOR, 'input[name="prefectures"]:checked')]
    assert ticked == ["08", "09", "10", "11", "12", "13", "14"]
    browser.shot("03-signup-filled")
    browser.submit('form[action="/s/"] button[type="submit"]')
    assert d.current_url == public + "/s/sent"
    browser.shot("04-signup-sent")

    # The confirmation mail lands in the file transport; its link confirms.
    p.wait_for_event("self-service mail sent")
    [confirmation] = _mails(outbox)
    assert "登録の確認" in str(confirmation["Subject"])
    d.get(link_in(confirmation, "/s/confirm"))
    # Exactly what will be subscribed (issue 21, N4), before the button.
    shown = browser.css("#settings").text
    assert "NTT東日本" in shown and "NTT西日本" not in shown and "東京都" in shown
    browser.shot("05-confirm")
    phone = Browser(width=390, height=844, phone=True)
    try:
        phone.driver.get(link_in(confirmation, "/s/confirm"))
        width = phone.driver.execute_script("return document.documentElement.scrollWidth")
        assert int(width) <= 390  # nothing sideways on a phone
        phone.shot("05-confirm-phone")
    finally:
        phone.quit()
    browser.submit("#confirm")
    assert "登録が完了しました" in d.page_source
    browser.shot("06-confirmed")
    [sub] = _admin(admin, "GET", f"/subscribers?email={EMAIL}")["items"]
    assert sub["status"] == "active" and sub["carriers"] == ["east"]

    # A matching notice arrives.
    _feed(feed, [{"id": "F1", "kind": "failure", "title": "東京都の一部で光回線の故障",
                  "prefectures": ["13"], "services": ["フレッツ光ネクスト"]}])
    report = _admin(admin, "POST", "/sources/local/poll")
    assert report["changes"][0]["deliveries"] == 1
    p.wait_for_event("mail sent")
    notice = _mails(outbox)[-1]
    assert "東京都の一部で光回線の故障" in str(notice["Subject"])
    unsubscribe = str(notice["List-Unsubscribe"]).strip("<>")
    assert notice["List-Unsubscribe-Post"] is None  # http on loopback: no one-click POST

    # The board shows it; its page shows its reports.
    d.get(public + "/notices")
    assert "東京都の一部で光回線の故障" in browser.css("#notice-1").text  # as it reads
    browser.shot("07-board")
    browser.submit("#notice-1 a")
    browser.shot("08-notice")

    # The manage link from the mail: Tokyo dropped.
    d.get(link_in(notice, "/s/manage"))
    browser.shot("09-manage")
    browser.css('input[name="prefectures"][value="13"]').click()
    browser.submit("#save")
    assert browser.css("#flash").text == "変更を保存しました。"
    browser.shot("10-manage-saved")
    [sub] = _admin(admin, "GET", f"/subscribers?email={EMAIL}")["items"]
    assert "13" not in sub["prefectures"] and "14" in sub["prefectures"]

    # A notice for Tokyo does not arrive.
    _feed(feed, [{"id": "F1", "kind": "failure", "title": "東京都の一部で光回線の故障",
                  "prefectures": ["13"], "services": ["フレッツ光ネクスト"]},
                 {"id": "F2", "kind": "failure", "title": "東京都の一部でひかり電話の故障",
                  "prefectures": ["13"]}])
    report = _admin(admin, "POST", "/sources/local/poll")
    assert [c["deliveries"] for c in report["changes"]] == [0]
    before = len(_mails(outbox))

    # One-click, as a mail client sends it: a POST to the List-Unsubscribe URL.
    req = urllib.request.Request(unsubscribe, data=b"List-Unsubscribe=One-Click",
                                 method="POST", headers={
                                     "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    [sub] = _admin(admin, "GET", f"/subscribers?email={EMAIL}")["items"]
    assert sub["status"] == "unsubscribed"
    d.get(unsubscribe)
    browser.shot("11-unsubscribed")

    # Nothing more, not even for a prefecture still ticked.
    _feed(feed, [{"id": "F3", "kind": "failure", "title": "神奈川県の一部で故障",
                  "prefectures": ["14"]}])
    report = _admin(admin, "POST", "/sources/local/poll")
    assert [c["deliveries"] for c in report["changes"]][-1] == 0
    assert len(_mails(outbox)) == before

    # The other public pages, for the record.
    d.get(public + "/s/link")
    browser.shot("12-link-request")
    d.get(public + "/s/manage?t=m1.1.AAAAAAAAAAAAAAAAAAAAAA")
    assert "リンクが無効です" in d.page_source
    browser.shot("13-bad-link")


def test_an_operator_pauses_and_resumes_from_the_console(
        browser: Browser, running: dict[str, Any]) -> None:
    admin, d = running["admin"], browser.driver
    _feed(running["feed"], [{"id": "W1", "kind": "construction", "title": "千葉県の一部で設備工事",
                             "prefectures": ["12"], "starts_at": "2026-12-10T01:00:00+09:00",
                             "ends_at": "2026-12-10T05:00:00+09:00"}])
    req = urllib.request.Request(admin + "/admin/v1/subscribers", method="POST",
                                 data=json.dumps({"email": "ops@isp.example.jp",
                                                  "name": "監視 花子"}).encode(),
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 201
    _admin(admin, "POST", "/sources/local/poll")
    d.get(admin + "/console/")
    assert d.current_url == admin + "/console/login"
    browser.shot("20-console-login")
    browser.css("#token").send_keys("wrong-token-0123456789")
    browser.submit("#login")
    assert "トークンが正しくありません" in browser.css("#error").text
    browser.css("#token").send_keys(ADMIN_TOKEN)
    browser.submit("#login")
    assert browser.css("#sending-state").text == "送信中"
    browser.shot("21-console-status")
    # The pause is folded away and asked again: one stray click stops nothing.
    assert not browser.css("#pause").is_displayed()
    browser.css("#pause-zone summary").click()
    browser.css("#reason").send_keys("回線メンテナンスのため")
    browser.submit("#pause")
    assert browser.css("#confirm-pause").is_displayed()
    browser.shot("22-console-pause-confirm")
    assert _admin(admin, "GET", "/status")["sending"]["paused"] is False
    browser.submit("#confirm-pause")
    assert browser.css("#sending-state").text == "停止中"
    assert "回線メンテナンスのため" in d.page_source
    browser.shot("23-console-paused")
    assert _admin(admin, "GET", "/status")["sending"]["paused"] is True
    browser.submit("#resume")
    assert browser.css("#sending-state").text == "送信中"
    assert _admin(admin, "GET", "/status")["sending"]["paused"] is False
    for i, page in enumerate(["notices", "notices/1", "deliveries?state=sent", "bounces",
                              "tickets", "subscribers", "subscribers/1"]):
        d.get(f"{admin}/console/{page}")
        assert "jpixd コンソール" in d.title
        browser.shot(f"{24 + i}-console-{page.split('?')[0].replace('/', '-')}")


def test_the_sign_up_page_on_a_phone(running: dict[str, Any]) -> None:
    _feed(running["feed"], [{"id": "F1", "kind": "failure", "title": "東京都の一部で故障",
                             "prefectures": ["13"]}])
    _admin(running["admin"], "POST", "/sources/local/poll")
    phone = Browser(width=390, height=844, phone=True)
    try:
        # The board's first failure is on the first screen (reader review: nav, filters
        # and feed links filled the top half); the filters are a tap away.
        phone.driver.get(running["public"] + "/notices")
        top = phone.driver.execute_script(
            "return document.querySelector('.notice-box').getBoundingClientRect().top")
        assert float(top) < 844 / 2
        assert not phone.css("#carrier").is_displayed()
        phone.css("#filters-box summary").click()
        assert phone.css("#carrier").is_displayed()
        for path, name in (("/s/", "30-signup-phone"), ("/notices", "31-board-phone")):
            phone.driver.get(running["public"] + path)
            view, page = phone.driver.execute_script(
                "return [document.documentElement.clientWidth, "
                "document.documentElement.scrollWidth]")
            assert int(view) == 390  # the phone's width, not a desktop window's
            assert int(page) <= int(view), path  # nothing sideways: no horizontal scrolling
            phone.shot(name)
    finally:
        phone.quit()


def test_a_notice_page_says_what_each_report_changed(
        browser: Browser, running: dict[str, Any]) -> None:
    """Issue 25, part 3: each report of the 経過 says what it changed, at 1280 px and on a
    phone, without sideways scrolling."""
    work = {"id": "W9", "kind": "construction", "title": "京都府の一部で設備工事",
            "prefectures": ["26"], "starts_at": "2026-12-10T01:00:00+09:00",
            "ends_at": "2026-12-10T05:00:00+09:00"}
    _feed(running["feed"], [work])
    _admin(running["admin"], "POST", "/sources/local/poll")  # (or the start's own poll)
    [first] = _admin(running["admin"], "GET", "/notices")["items"]
    _feed(running["feed"], [{**work, "starts_at": "2026-12-10T02:00:00+09:00",
                             "services": ["フレッツ光ネクスト"]}])
    _admin(running["admin"], "POST", "/sources/local/poll")
    url = f"{running['public']}/notices/{first['id']}"
    browser.driver.get(url)
    changes = browser.css("#revisions ul.changes").text
    assert "工事日時: 12/10(木) 01:00～05:00 → 12/10(木) 02:00～05:00" in changes
    assert "影響サービス: （なし） → フレッツ光ネクスト" in changes
    browser.shot("14-notice-changes")
    phone = Browser(width=390, height=844, phone=True)
    try:
        phone.driver.get(url)
        page = phone.driver.execute_script("return document.documentElement.scrollWidth")
        assert int(page) <= 390  # the table scrolls in its own box at most
        phone.shot("15-notice-changes-phone")
    finally:
        phone.quit()


def test_a_sign_up_with_mistakes_says_so_first(running: dict[str, Any]) -> None:
    """Issue 25, part 6: the errors in Japanese at the top, focus moved there, on a
    phone (where the fields with errors may be screens below)."""
    phone = Browser(width=390, height=844, phone=True)
    try:
        d = phone.driver
        d.get(running["public"] + "/s/")
        phone.css("#email").send_keys("noc@isp.example.jp")
        for box in d.find_elements("css selector", 'input[name="carriers"]:checked'):
            box.click()
        phone.submit("button[type=submit]")
        assert "通信事業者を1つ以上選んでください" in phone.css("#errors").text
        assert d.execute_script("return document.activeElement.id") == "errors"
        phone.shot("32-signup-errors-phone")
    finally:
        phone.quit()


def _axe_findings(browser: Browser, urls: list[str], shots: str = "") -> dict[str, Any]:
    """axe-core's WCAG 2 A/AA rules on each page: its serious and critical findings;
    with `shots`, each page's screenshot too, named after its path."""
    from urllib.parse import urlsplit

    from axe_selenium_python import Axe

    found = {}
    for url in urls:
        browser.driver.get(url)
        if shots:
            path = urlsplit(url).path.strip("/").replace("/", "-") or "root"
            browser.shot(f"{shots}-{path}")
        axe = Axe(browser.driver)
        axe.inject()
        # WCAG 2 A and AA (the bundled axe-core's best-practice rules include
        # `checkboxgroup`, which later axe-core versions dropped).
        result = axe.run(options={"runOnly": {"type": "tag",
                                              "values": ["wcag2a", "wcag2aa"]}})
        bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
               for v in result["violations"] if v["impact"] in ("serious", "critical")]
        if bad:
            found[url] = bad
    return found


def test_every_page_passes_an_accessibility_scan_on_a_desktop_and_a_phone(
        browser: Browser, running: dict[str, Any]) -> None:
    """Issue 25, part 7: axe-core's WCAG 2 A/AA rules on the pages a subscriber, a NOC
    engineer and an operator read, at 1280 px and at 390 px: no serious or critical
    finding (colour contrast, names, labels, language)."""
    admin, public = running["admin"], running["public"]
    _feed(running["feed"], [
        {"id": "F1", "kind": "failure", "title": "東京都の一部で故障", "prefectures": ["13"]},
        {"id": "W1", "kind": "construction", "title": "千葉県の一部で設備工事",
         "prefectures": ["12"], "starts_at": "2026-12-10T01:00:00+09:00",
         "ends_at": "2026-12-10T05:00:00+09:00"}])
    req = urllib.request.Request(admin + "/admin/v1/subscribers", method="POST",
                                 data=json.dumps({"email": EMAIL}).encode(),
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        subscriber = json.loads(r.read())["id"]
    # A channel besides mail, so that its list and form are scanned too (issue 26).
    req = urllib.request.Request(
        admin + f"/admin/v1/subscribers/{subscriber}/channels", method="POST",
        data=json.dumps({"kind": "slack", "url": "https://hooks.invalid/services/T0/B0/"
                         "abcdefgh"}).encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 201
    _admin(admin, "POST", "/sources/local/poll")
    [first, *_] = _admin(admin, "GET", "/notices")["items"]
    links = LinkBuilder(public, Signer(["w" * 40]), confirm_ttl=timedelta(days=2),
                        manage_ttl=timedelta(days=30))
    pages = [public + p for p in ("/notices", f"/notices/{first['id']}", "/s/", "/s/link",
                                  "/nothing")]
    pages += [links.manage(subscriber, datetime.now(UTC)), links.unsubscribe(subscriber)]
    console = [f"{admin}/console/{p}" for p in (
        "", "notices", f"notices/{first['id']}", "deliveries", "deliveries?state=sent",
        "bounces", "tickets", "subscribers", f"subscribers/{subscriber}", "nothing")]
    phone = Browser(width=390, height=844, phone=True)
    try:
        for b in (browser, phone):
            b.driver.get(admin + "/console/login")
            b.css("#token").send_keys(ADMIN_TOKEN)
            b.submit("#login")
        # Every page at a phone's width is saved too, to be looked at (50-phone-*.png,
        # 51-phone-console-*.png).
        found = {"1280": _axe_findings(browser, pages + console),
                 "390": {**_axe_findings(phone, pages, "50-phone"),
                         **_axe_findings(phone, console, "51-phone")}}
        # The pages with a subscriber's channels, at a desktop's width too (issue 26).
        for url, name in ((pages[5], "52-desktop-manage"),
                          (f"{admin}/console/subscribers/{subscriber}", "52-desktop-subscriber")):
            browser.driver.get(url)
            browser.shot(name)
    finally:
        phone.quit()
    assert found == {"1280": {}, "390": {}}


MAIL_CLIENT = """<!doctype html><html lang="ja"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body {{ margin: 0; font: 16px/1.5 sans-serif; }}
header {{ padding: 10px 14px; border-bottom: 1px solid #ccc; background: #f6f6f6; }}
header .from, header .date {{ color: #555; font-size: 13px; }}
header .subject {{ font-weight: bold; margin: 4px 0; }}
main {{ padding: 10px 14px; }}
main div {{ white-space: pre-wrap; overflow-wrap: anywhere; min-height: 1.5em; }}
</style></head>
<body><header><div class="from">{sender}</div><div class="subject" id="subject">{subject}</div>
<div class="date">{date}</div></header><main id="body">{body}</main></body></html>"""


def _as_a_phone_shows(mail: EmailMessage) -> str:
    """A received mail as a phone's mail app shows text/plain: headers decoded, the body
    in a proportional font, long lines wrapped by the screen."""
    import html

    part = mail.get_body(("plain",))
    assert part is not None
    return MAIL_CLIENT.format(sender=html.escape(str(mail["From"])),
                              subject=html.escape(str(mail["Subject"])),
                              date=html.escape(str(mail["Date"])),
                              body="".join(f"<div>{html.escape(line)}</div>" for line
                                           in part.get_content().splitlines()))


def test_mails_read_on_a_phone(running: dict[str, Any], tmp_path: Path) -> None:
    """Issue 25, parts 4 and 7: the mails a NOC engineer gets for a work, its move, a
    failure and its recovery, decoded as a mail client decodes them and shown at a
    phone's width; saved as images (screenshots/mail-*.png) to be read by a person."""
    admin, feed, outbox, p = (running["admin"], running["feed"], running["outbox"],
                              running["proc"])
    req = urllib.request.Request(admin + "/admin/v1/subscribers", method="POST",
                                 data=json.dumps({"email": EMAIL}).encode(),
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 201
    places = ["大阪市都島区", "大阪市福島区", "大阪市此花区", "大阪市西区", "大阪市港区",
              "大阪市大正区", "大阪市天王寺区", "大阪市浪速区", "東大阪市", "堺市堺区",
              "堺市中区", "八尾市", "松原市", "大阪狭山市"]
    work = {"id": "W1", "kind": "construction",
            "title": "大阪府の一部地域における通信設備の更改工事",
            "prefectures": ["27"], "localities": places,
            "services": ["フレッツ光ネクスト", "フレッツ光クロス", "ひかり電話"],
            "body": "通信設備の更改工事に伴い、工事時間中に最大15分程度の通信断が2回発生します。"
                    "ご迷惑をおかけしますが、ご理解とご協力をお願い申し上げます。",
            "starts_at": "2026-12-10T01:00:00+09:00", "ends_at": "2026-12-10T05:00:00+09:00"}
    failure = {"id": "F1", "kind": "failure",
               "title": "大阪市中央区の一部でフレッツ光がご利用しづらい状況",
               "prefectures": ["27"], "localities": ["大阪市中央区"],
               "services": ["フレッツ光ネクスト"], "starts_at": "2026-12-06T07:40:00+09:00"}
    steps = [
        [work, failure],
        [{**work, "starts_at": "2026-12-10T02:00:00+09:00",
          "ends_at": "2026-12-10T06:00:00+09:00"},
         {**failure, "status": "recovered", "ends_at": "2026-12-06T08:30:00+09:00"}],
    ]
    for i, notices in enumerate(steps):
        _feed(feed, notices)
        _admin(admin, "POST", "/sources/local/poll")
        p.wait_until(lambda _, n=2 * (i + 1): len(_mails(outbox)) >= n)
    mails = _mails(outbox)
    subjects = [str(m["Subject"]) for m in mails]
    # (ISO-2022-JP carries ～ as JIS 〜, as every Japanese mailer does.)
    assert any(s.startswith("【工事】12/10(木) 01:00〜05:00") for s in subjects), subjects
    assert any("【回復】" in s for s in subjects) and any("【更新】" in s for s in subjects)
    phone = Browser(width=390, height=844, phone=True)
    try:
        for i, mail in enumerate(mails):
            page = tmp_path / f"mail-{i}.html"
            page.write_text(_as_a_phone_shows(mail), encoding="utf-8")
            phone.driver.get(page.as_uri())
            body = phone.css("#body").text
            assert body.startswith("ご担当者様")  # never a lone 「様」
            assert "\n、" not in body and "\n。" not in body
            width = phone.driver.execute_script("return document.documentElement.scrollWidth")
            assert int(width) <= 390  # read without sideways scrolling
            # Every line the mail holds is one line on the phone (a URL apart): the app
            # does not break it again, between any two characters.
            rebroken = phone.driver.execute_script(
                "return [...document.querySelectorAll('#body div')]"
                ".filter(d => !d.textContent.includes('://') && d.getClientRects().length"
                " && d.getBoundingClientRect().height > 1.6 * parseFloat("
                "getComputedStyle(d).lineHeight)).map(d => d.textContent)")
            assert rebroken == [], rebroken
            kind = "recover" if "【回復】" in subjects[i] else \
                "update" if "【更新】" in subjects[i] else "new"
            phone.shot(f"mail-{i + 1}-{kind}-phone")
    finally:
        phone.quit()
