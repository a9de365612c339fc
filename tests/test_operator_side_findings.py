"""The operator side's low findings of the second security probe (issue 21: N9–N11,
N13–N15), each as the probe reproduced it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp

from jpixd.model import Subscriber
from tests.conftest import ADMIN_TOKEN, base_mapping, on_backend, toml_dumps
from tests.test_console import csrf_of, login
from tests.webharness import site


async def test_a_logged_out_session_is_refused_even_with_a_copied_cookie(
        tmp_path: Path, backend_url: str | None) -> None:
    """N10: logout only deleted the browser's cookie; a copy of it still paused sending."""
    async with site(tmp_path, **on_backend(backend_url)) as s:
        op = await login(s)
        other = await login(s)  # the same second, another browser: its own session
        async with op, other:
            _, csrf = await csrf_of(op, s.d.base_url + "/console/")
            copied = next(c.value for c in op.cookie_jar if c.key == "jpixd_console")
            mine = next(c.value for c in other.cookie_jar if c.key == "jpixd_console")
            assert copied != mine
            async with op.post(s.d.base_url + "/console/logout", data={"csrf": csrf},
                               allow_redirects=False) as r:
                assert r.status == 303
            async with aiohttp.ClientSession() as thief:
                headers = {"Cookie": f"jpixd_console={copied}"}
                async with thief.get(s.d.base_url + "/console/", headers=headers,
                                     allow_redirects=False) as r:
                    assert r.status == 303 and r.headers["Location"] == "/console/login"
                async with thief.post(s.d.base_url + "/console/sending", headers=headers,
                                      data={"action": "pause", "reason": "replayed",
                                            "csrf": csrf}, allow_redirects=False) as r:
                    assert r.status == 303
            assert not (await s.rt.store.sending_state()).paused
            async with other.get(s.d.base_url + "/console/") as r:  # still logged in
                assert r.status == 200 and "送信中" in await r.text()


async def test_wrong_tokens_never_lock_out_the_right_one(tmp_path: Path) -> None:
    """N11: ten wrong tokens locked the client's address out, right token included."""
    async with site(tmp_path) as s:
        async with aiohttp.ClientSession() as http:
            statuses = []
            for _ in range(12):
                async with http.post(s.d.base_url + "/console/login",
                                     data={"token": "wrong-token-0123456789"},
                                     allow_redirects=False) as r:
                    statuses.append(r.status)
            assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
            async with http.post(s.d.base_url + "/console/login", data={"token": ADMIN_TOKEN},
                                 allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/console/"


async def test_nul_in_a_filter_is_a_400_not_everything_or_a_500(
        tmp_path: Path, backend_url: str | None) -> None:
    """N9: `q=%00` matched every subscriber on SQLite and was a 500 on PostgreSQL."""
    async with site(tmp_path, **on_backend(backend_url)) as s:
        await s.rt.store.create_subscriber(Subscriber(email="a@isp.example.jp"),
                                           s.rt.clock())
        for path in ("/subscribers?q=%00", "/subscribers?email=%00", "/notices?source=%00",
                     "/tickets?email=%00", "/suppressions/a%00b"):
            method = "DELETE" if path.startswith("/suppressions") else "GET"
            async with s.http.request(method, s.d.base_url + "/admin/v1" + path,
                                      headers=s.admin) as r:
                body = await r.json()
                assert r.status == 400, (path, r.status, body)
                assert body["error"]["code"] == "invalid_parameter"
        op = await login(s)
        async with op, op.get(s.d.base_url + "/console/subscribers?q=%00") as r:
            assert r.status == 400 and "a@isp.example.jp" not in await r.text()


async def test_the_console_masks_a_password_in_a_feed_url(tmp_path: Path) -> None:
    """N13: the status page showed `http://feeduser:S3cretFeedPass@…` in the error."""
    source = {"name": "locked", "kind": "rss", "carrier": "east", "interval": "1h",
              "url": "http://feeduser:S3cretFeedPass@127.0.0.1:9/nonexistent.rss"}
    async with site(tmp_path, sources=[source]) as s:
        async with s.http.post(s.d.base_url + "/admin/v1/sources/locked/poll",
                               headers=s.admin) as r:
            assert r.status == 200
        state = await s.rt.store.source_state("locked")
        assert state.last_error and "S3cretFeedPass" in state.last_error  # what is stored
        op = await login(s)
        async with op, op.get(s.d.base_url + "/console/") as r:
            text = await r.text()
        assert "S3cretFeedPass" not in text and "feeduser:***@" in text


def _jpixd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JPIXD_")}
    return subprocess.run([sys.executable, "-m", "jpixd", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, umask=0o022)


def test_check_config_refuses_the_short_token_that_run_refuses(tmp_path: Path) -> None:
    """N14: a 5-character token passed `check-config` (the deploy hook's gate) and then
    `run` refused it."""
    (tmp_path / "token").write_text("short\n")
    (tmp_path / "jpixd.toml").write_text(toml_dumps(base_mapping(tmp_path, http={
        "listen": "127.0.0.1:0", "admin_token_file": str(tmp_path / "token")})))
    done = _jpixd("check-config", "--config", str(tmp_path / "jpixd.toml"), cwd=tmp_path)
    assert done.returncode == 2
    assert "the admin token has 5 characters; use at least 16" in done.stderr


def test_migrate_and_import_create_nothing_world_readable(tmp_path: Path) -> None:
    """N15: with umask 022, `migrate` made the database 0644 and its folder 0755."""
    (tmp_path / "jpixd.toml").write_text(toml_dumps(base_mapping(tmp_path)))
    (tmp_path / "subs.csv").write_text("email\nnoc@isp.example.jp\n")
    config = str(tmp_path / "jpixd.toml")
    assert _jpixd("migrate", "--config", config, cwd=tmp_path).returncode == 0
    assert _jpixd("subscribers", "import", str(tmp_path / "subs.csv"), "--config", config,
                  cwd=tmp_path).returncode == 0
    for path in (tmp_path / "state", *(tmp_path / "state").iterdir()):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o007 == 0, (path.name, oct(mode))
