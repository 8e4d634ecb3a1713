"""The dashboard feed and page over HTTP: shape, detector data, access rules."""

from __future__ import annotations

import re
from typing import Any
from unittest import mock

import aiohttp
import openai
import pytest
from aiohttp.test_utils import make_mocked_request

from switchgear.errors import AuthenticationFailed, PermissionDenied
from switchgear.proxy import keys
from switchgear.proxy.views.dashboard import DashboardSources, check_access
from switchgear.types import Action
from tests.dashboard.conftest import ADMIN_KEY, DashFactory, Sources, config_for
from tests.fakes import FakeUpstream
from tests.helpers import poll_until

DETECTOR_PLUGINS = ("switchgear.default_plugins.detectors", "switchgear.default_plugins.policy")

BEARER = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def get(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.get(url, **kw) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


async def test_feed_shape_without_detector(
    dash_gateway: DashFactory, upstreams: list[FakeUpstream], http: aiohttp.ClientSession
) -> None:
    gw = await dash_gateway(config_for(upstreams))
    status, feed = await get(http, gw.url + "/dashboard/feed.json", headers=BEARER)
    assert status == 200
    assert feed["detector"] is False
    assert feed["anomalies"] == {"open": [], "recent": []}
    assert feed["actions"] == [] and feed["series"]["series"] == []
    models = {m["name"]: m for m in feed["models"]}
    assert set(models) == {"m1", "m2"}
    m1 = models["m1"]
    assert m1["aliases"] == ["fast"] and m1["fallback_chain"] == ["m2"]
    assert m1["serving"] is True and m1["fallback_active"] is False
    assert [dc["name"] for dc in m1["datacenters"]] == ["dc1", "dc2"]
    a = m1["datacenters"][0]["backends"][0]
    assert a["id"] == "m1-a" and a["status"] == "healthy" and a["quantization"] == "int8"
    assert a["breaker"] == "closed" and a["ejected"] is None and a["open_events"] == []
    assert "api_key" not in a
    names = {p["name"] for p in feed["plugins"]}
    assert "static_discovery" in names or any("static" in n for n in names)


async def test_feed_merges_detector_data(
    dash_gateway: DashFactory, upstreams: list[FakeUpstream], http: aiohttp.ClientSession
) -> None:
    sources = Sources()
    assert isinstance(sources, DashboardSources)
    sources.fill("m1-a", "m1", seconds=30)
    event = sources.spike("m1-a", "m1", "latency_p95")
    sources.taken.append(Action("eject", "m1-a", "latency_p95 anomaly", event.id))
    sources.taken.append(Action("fallback", "m1", "all backends ejected", event.id))
    gw = await dash_gateway(config_for(upstreams), sources=sources)
    gw.app[keys.BACKEND_STATE].eject("m1-a", "latency_p95 anomaly")

    status, feed = await get(http, gw.url + "/dashboard/feed.json", headers=BEARER)
    assert status == 200 and feed["detector"] is True and feed["errors"] == []
    assert [e["id"] for e in feed["anomalies"]["open"]] == [event.id]
    assert feed["anomalies"]["open"][0]["contributions"] == {"baseline": 0.95, "statsmodels": 0.9}
    assert [a["kind"] for a in feed["actions"]] == ["eject", "fallback"]
    m1 = next(m for m in feed["models"] if m["name"] == "m1")
    assert m1["fallback_active"] is True and m1["fallback_reason"] == "all backends ejected"
    a = m1["datacenters"][0]["backends"][0]
    assert a["status"] == "ejected" and a["open_events"] == [event.id]
    series = {(s["backend_id"], s["metric"]): s for s in feed["series"]["series"]}
    assert len(series[("m1-a", "latency_p95")]["points"]) == 50

    newest = max(p[0] for s in series.values() for p in s["points"])
    _, later = await get(http, f"{gw.url}/admin/dashboard.json?since={newest}", headers=BEARER)
    assert later["since"] == pytest.approx(newest)
    assert all(s["points"] == [] for s in later["series"]["series"])

    sources.taken.append(Action("restore", "m1", "m1-a healthy again", event.id))
    _, restored = await get(http, gw.url + "/dashboard/feed.json", headers=BEARER)
    assert next(m for m in restored["models"] if m["name"] == "m1")["fallback_active"] is False


async def test_feed_reports_a_failing_source(
    dash_gateway: DashFactory, upstreams: list[FakeUpstream], http: aiohttp.ClientSession
) -> None:
    class Broken(Sources):
        def series(self, since: float) -> Any:
            raise RuntimeError("boom")

    gw = await dash_gateway(config_for(upstreams), sources=Broken())
    status, feed = await get(http, gw.url + "/dashboard/feed.json", headers=BEARER)
    assert status == 200 and feed["errors"] == ["series: RuntimeError"]
    assert feed["series"]["series"] == [] and len(feed["models"]) == 2


async def test_page_is_self_contained_with_a_strict_csp(
    dash_gateway: DashFactory, upstreams: list[FakeUpstream], http: aiohttp.ClientSession
) -> None:
    gw = await dash_gateway(config_for(upstreams))
    async with http.get(gw.url + "/dashboard", headers=BEARER) as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        csp = resp.headers["Content-Security-Policy"]
        html = await resp.text()
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp and csp.count("'sha256-") == 2
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "dashboard/feed.json" in html


async def test_access_over_loopback(
    dash_gateway: DashFactory, upstreams: list[FakeUpstream], http: aiohttp.ClientSession
) -> None:
    gw = await dash_gateway(config_for(upstreams, dashboard_localhost=True))
    for path in ("/dashboard", "/dashboard/feed.json"):
        assert (await get(http, gw.url + path))[0] == 200
        assert (await get(http, gw.url + path, headers=BEARER))[0] == 200
        assert (await get(http, gw.url + path, headers={"Authorization": "Bearer no"}))[0] == 401
    # /admin keeps the admin API's rule: the key, from anywhere
    assert (await get(http, gw.url + "/admin/dashboard.json"))[0] == 401
    assert (await get(http, gw.url + "/admin/dashboard.json", headers=BEARER))[0] == 200

    strict = await dash_gateway(config_for(upstreams, dashboard_localhost=False))
    for path in ("/dashboard", "/dashboard/feed.json"):
        status, body = await get(http, strict.url + path)
        assert status == 401 and body["error"]["type"] == "authentication_error"
        assert (await get(http, strict.url + path, headers=BEARER))[0] == 200

    cfg = config_for(upstreams, dashboard_localhost=False)
    cfg["auth"].pop("admin_key")
    closed = await dash_gateway(cfg)
    assert (await get(http, closed.url + "/dashboard"))[0] == 403


def _remote_request(app: Any, remote: str, headers: dict[str, str]) -> Any:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (remote, 40000) if name == "peername" else default
    )
    return make_mocked_request("GET", "/dashboard", headers=headers, app=app, transport=transport)


@pytest.mark.parametrize(
    ("auth", "remote", "headers", "outcome"),
    [
        ({}, "10.1.2.3", {}, AuthenticationFailed),
        ({}, "10.1.2.3", BEARER, None),
        ({}, "127.0.0.1", {}, AuthenticationFailed),
        ({"dashboard_localhost": True}, "::ffff:127.0.0.1", {}, None),
        ({"dashboard_localhost": True}, "127.0.0.2", {}, None),
        ({"admin_localhost_only": True}, "10.1.2.3", BEARER, PermissionDenied),
        ({"admin_localhost_only": True, "dashboard_localhost": True}, "::1", {}, None),
    ],
)
async def test_access_rules(
    dash_gateway: DashFactory,
    upstreams: list[FakeUpstream],
    auth: dict[str, Any],
    remote: str,
    headers: dict[str, str],
    outcome: type[Exception] | None,
) -> None:
    gw = await dash_gateway(config_for(upstreams, **auth))
    request = _remote_request(gw.app, remote, headers)
    if outcome is None:
        check_access(request)
    else:
        with pytest.raises(outcome):
            check_access(request)


async def test_feed_reports_the_request_rate_of_real_traffic(
    dash_gateway: DashFactory, upstreams: list[FakeUpstream], http: aiohttp.ClientSession
) -> None:
    """Requests sent through the gateway show as requests/s in the feed's series: every
    request counted once, in the tick it finished in (a rate of 0 would be a broken chart)."""
    config = config_for(upstreams) | {
        "detector": {"enabled": True, "resolution_s": 0.25, "scrape_interval_s": 60.0}
    }
    gw = await dash_gateway(config, plugins=DETECTOR_PLUGINS)
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    sent = 12
    for _ in range(sent):
        await client.chat.completions.create(
            model="m1", messages=[{"role": "user", "content": "hi"}]
        )
    await client.close()

    async def rps_points() -> list[tuple[str, float]]:
        _, feed = await get(http, gw.url + "/dashboard/feed.json", headers=BEARER)
        return [
            (s["backend_id"], p[1])
            for s in feed["series"]["series"]
            if s["metric"] == "rps" and s["model"] == "m1"
            for p in s["points"]
        ]

    async def counted() -> list[tuple[str, float]] | None:
        points = await rps_points()
        total = sum(v for _, v in points) * 0.25
        return points if round(total) == sent else None

    points = await poll_until(counted, within=10, what="all requests counted in rps")
    assert max(v for _, v in points) > 0
    assert {b for b, v in points if v > 0} <= {"m1-a", "m1-b"}
