"""Who may open the dashboard and the admin API: the key by default, one loopback rule, and
no trust in forwarding headers."""

from __future__ import annotations

from typing import Any
from unittest import mock

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from switchgear.auth import basic_password, bearer_token, is_loopback, match_key
from switchgear.errors import AuthenticationFailed, PermissionDenied
from switchgear.proxy.middlewares import check_admin
from switchgear.proxy.views.dashboard import check_access
from tests.dashboard.conftest import ADMIN_KEY, DashFactory, config_for
from tests.fakes import FakeUpstream

BEARER = {"Authorization": f"Bearer {ADMIN_KEY}"}
PAGES = ("/dashboard", "/dashboard/feed.json")


def assert_openai_error(body: Any, type_: str) -> None:
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == type_


@pytest.mark.parametrize(
    ("remote", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:127.0.0.2", True),
        ("10.1.2.3", False),
        ("::ffff:10.1.2.3", False),
        ("128.0.0.1", False),
        ("fe80::1", False),
        ("localhost", False),
        ("", False),
        (None, False),
    ],
)
def test_one_loopback_rule(remote: str | None, loopback: bool) -> None:
    assert is_loopback(remote) is loopback


def test_credentials_and_key_matching(monkeypatch: pytest.MonkeyPatch) -> None:
    assert bearer_token({"Authorization": "bearer  sk-1 "}) == b"sk-1"
    assert bearer_token({"Authorization": "Bearer "}) is None
    assert bearer_token({"Authorization": "Basic c2stMQ=="}) is None
    assert basic_password({"Authorization": "Basic b3A6c2stMQ=="}) == b"sk-1"  # op:sk-1
    assert basic_password({"Authorization": "Basic !!!"}) is None
    assert basic_password({"Authorization": "Basic b3A="}) is None  # no password

    import switchgear.auth as auth

    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    keys = (b"sk-a", b"sk-b", b"sk-long-third-key")
    for token, index in ((b"sk-a", 0), (b"sk-long-third-key", 2), (b"sk-x", None), (None, None)):
        calls.clear()
        assert match_key(token, keys) == index
        # Every key is compared whichever matches, over digests of one length.
        assert len(calls) == len(keys)
        assert {len(a) for a, _ in calls} | {len(b) for _, b in calls} == {32}


async def test_dashboard_needs_the_admin_key_by_default(
    dash_gateway: DashFactory, upstreams: list[FakeUpstream], http: aiohttp.ClientSession
) -> None:
    gw = await dash_gateway(config_for(upstreams))
    for path in PAGES:
        async with http.get(gw.url + path) as r:  # a loopback client, no key
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Basic ")
            assert_openai_error(await r.json(), "authentication_error")
        async with http.get(gw.url + path, headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
            assert_openai_error(await r.json(), "authentication_error")
        async with http.get(gw.url + path, headers=BEARER) as r:
            assert r.status == 200
        # The browser's own prompt: any user name, the admin key as the password.
        async with http.get(gw.url + path, headers=_basic(ADMIN_KEY)) as r:
            assert r.status == 200
        async with http.get(gw.url + path, headers=_basic("nope")) as r:
            assert r.status == 401


def _basic(password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth("operator", password)}


async def _from(url: str, source: str, headers: dict[str, str] | None = None) -> int:
    """GET ``url`` from the loopback source address ``source``."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(url, headers=headers or {}) as r:
            return r.status


async def test_127_0_0_2_is_loopback_for_admin_and_dashboard(
    dash_gateway: DashFactory, upstreams: list[FakeUpstream]
) -> None:
    cfg = config_for(upstreams, admin_localhost_only=True, dashboard_localhost=True)
    gw = await dash_gateway(cfg)
    # A real connection whose peer address is 127.0.0.2: both checks call it loopback.
    assert await _from(gw.url + "/admin/backends", "127.0.0.2", BEARER) == 200
    assert await _from(gw.url + "/admin/dashboard.json", "127.0.0.2", BEARER) == 200
    for path in PAGES:
        assert await _from(gw.url + path, "127.0.0.2") == 200
    # And the same rule refuses the same non-loopback peer on both.
    for check in (check_admin, check_access):
        with pytest.raises(PermissionDenied):
            check(_request(gw.app, "/admin/backends", "10.1.2.3", BEARER))
        check(_request(gw.app, "/admin/backends", "::ffff:127.0.0.2", BEARER))


def _request(app: web.Application, path: str, remote: str, headers: dict[str, str]) -> Any:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (remote, 40000) if name == "peername" else default
    )
    return make_mocked_request("GET", path, headers=headers, app=app, transport=transport)


async def _same_host_proxy(target: str) -> tuple[web.AppRunner, str]:
    """A reverse proxy on loopback in front of ``target`` that adds ``X-Forwarded-For`` for
    its (outside) client, as nginx's ``proxy_add_x_forwarded_for`` does."""
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        headers = {
            k: v for k, v in request.headers.items() if k.lower() in ("authorization", "accept")
        }
        headers["X-Forwarded-For"] = "203.0.113.9"
        async with session.get(target + request.path_qs, headers=headers) as r:
            kept = {k: v for k, v in r.headers.items() if k.lower() in ("content-type",)}
            return web.Response(status=r.status, body=await r.read(), headers=kept)

    app = web.Application()
    app.router.add_get("/{tail:.*}", forward)

    async def close_session(_: web.Application) -> None:
        await session.close()

    app.on_cleanup.append(close_session)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_forwarded_requests_are_not_trusted(
    dash_gateway: DashFactory, upstreams: list[FakeUpstream], http: aiohttp.ClientSession
) -> None:
    gw = await dash_gateway(config_for(upstreams))
    runner, proxy = await _same_host_proxy(gw.url)
    try:
        # Through a proxy on the same host, an outside client is refused without the key
        # (the gateway's peer is the loopback proxy), and admitted with it.
        for path in PAGES:
            async with http.get(proxy + path) as r:
                assert r.status == 401
                assert_openai_error(await r.json(), "authentication_error")
            async with http.get(proxy + path, headers=BEARER) as r:
                assert r.status == 200
    finally:
        await runner.cleanup()

    # A forwarding header never makes a remote peer loopback, for either check.
    opted_in = await dash_gateway(
        config_for(upstreams, admin_localhost_only=True, dashboard_localhost=True)
    )
    spoofed = {"X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1", "X-Real-IP": "::1"}
    with pytest.raises(PermissionDenied):
        check_access(_request(opted_in.app, "/dashboard", "203.0.113.9", spoofed))
    with pytest.raises(PermissionDenied):
        check_admin(_request(opted_in.app, "/admin/backends", "203.0.113.9", spoofed | BEARER))
    lenient = await dash_gateway(config_for(upstreams, dashboard_localhost=True))
    with pytest.raises(AuthenticationFailed):
        check_access(_request(lenient.app, "/dashboard", "203.0.113.9", spoofed))
