"""The admin API frame: bearer auth on everything, JSON errors, OpenAPI, pause/resume."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from jpixd.web.app import build_app
from tests.conftest import RunningDaemon, make_config, on_backend, running_daemon


@pytest.fixture
async def daemon(tmp_path: Path, backend_url: str | None) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(make_config(tmp_path, **on_backend(backend_url)),
                              registry=CollectorRegistry()) as d:
        yield d


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": "Basic dGVzdDp0ZXN0"},
    {"Authorization": "Bearer "},
])
@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/admin/v1/status"),
    ("POST", "/admin/v1/sending/pause"),
    ("POST", "/admin/v1/sending/resume"),
    ("GET", "/admin/v1/openapi.json"),
    ("GET", "/admin/v1/no-such-thing"),
])
async def test_admin_refuses_without_the_right_token(daemon: RunningDaemon, method: str,
                                                     path: str,
                                                     headers: dict[str, str]) -> None:
    async with aiohttp.ClientSession() as http, http.request(
            method, daemon.base_url + path, headers=headers) as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"] == "Bearer"
        body = await r.json()
        assert body["error"]["code"] == "unauthorized"
        assert body["error"]["message"]
    assert daemon.daemon.runtime is not None
    assert not (await daemon.daemon.runtime.store.sending_state()).paused


async def test_pause_and_resume(daemon: RunningDaemon) -> None:
    async with aiohttp.ClientSession(headers=daemon.headers) as http:
        async with http.post(daemon.base_url + "/admin/v1/sending/pause",
                             json={"reason": "planned SES maintenance"}) as r:
            assert r.status == 200
            body = await r.json()
            assert body["paused"] is True and body["reason"] == "planned SES maintenance"
        async with http.get(daemon.base_url + "/metrics") as r:
            assert "jpixd_sending_paused 1.0" in await r.text()
        async with http.get(daemon.base_url + "/admin/v1/status") as r:
            status = await r.json()
            assert status["sending"]["paused"] is True
            assert status["loops"]["housekeeping"]["up"] is True
            assert status["deliveries"]["pending"] == 0
        async with http.get(daemon.base_url + "/readyz") as r:
            # Paused is reported, but not "unready".
            assert r.status == 200 and (await r.json())["sending_paused"] is True
        async with http.post(daemon.base_url + "/admin/v1/sending/resume") as r:
            assert r.status == 200 and (await r.json())["paused"] is False


async def test_bad_bodies_get_a_json_error_and_change_nothing(daemon: RunningDaemon) -> None:
    async with aiohttp.ClientSession(headers=daemon.headers) as http:
        async with http.post(daemon.base_url + "/admin/v1/sending/pause", data=b"{not json",
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "invalid_json"
        async with http.post(daemon.base_url + "/admin/v1/sending/pause",
                             json={"reason": 42}) as r:
            assert r.status == 400
            assert (await r.json())["error"]["fields"] == {"reason": "must be a string"}
        async with http.get(daemon.base_url + "/admin/v1/nothing-here") as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "not_found"
        async with http.delete(daemon.base_url + "/admin/v1/status") as r:
            assert r.status == 405
            assert (await r.json())["error"]["code"] == "method_not_allowed"
        async with http.get(daemon.base_url + "/admin/v1/status") as r:
            assert (await r.json())["sending"]["paused"] is False


async def test_openapi_documents_every_operation(daemon: RunningDaemon) -> None:
    async with aiohttp.ClientSession(headers=daemon.headers) as http, http.get(
            daemon.base_url + "/admin/v1/openapi.json") as r:
        doc = await r.json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) >= {"/admin/v1/status", "/admin/v1/sending/pause",
                                 "/admin/v1/sending/resume", "/admin/v1/openapi.json"}
    assert "post" in doc["paths"]["/admin/v1/sending/pause"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    # Every admin route the server answers is in the document, and nothing else is.
    assert daemon.daemon.runtime is not None
    app = build_app(daemon.daemon.runtime)
    served = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and r.resource.canonical.startswith("/admin/v1")
              and r.method != "HEAD"}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
