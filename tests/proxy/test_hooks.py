"""The gateway calls every request-path and lifecycle hook as the contract says."""

from __future__ import annotations

import asyncio
import random

import openai
import pytest

from switchgear import hookimpl
from switchgear.default_plugins import balancing
from switchgear.proxy.breaker import BackendState
from switchgear.proxy.keys import OBSERVERS
from switchgear.types import Backend, RequestContext, RouteDecision
from tests.proxy.conftest import backends

MSG = [{"role": "user", "content": "hi"}]


async def test_alias_goes_through_select_model_and_sets_route_header(upstream, gateway):
    class Router:
        @hookimpl
        def select_model(self, ctx, models):
            assert set(models) == {"m1", "m2"}
            return RouteDecision("m2", "short-prompt")

    m1, m2 = await upstream("m1"), await upstream("m2")
    gw = await gateway({"backends": backends(m1, m2)}, plugins=(Router(),))
    async with gw.openai() as client:
        raw = await client.chat.completions.with_raw_response.create(model="auto", messages=MSG)
    assert raw.headers["x-switchgear-route"] == "m2; rule=short-prompt"
    assert m2.requests[0].body["model"] == "m2"


async def test_alias_without_router_is_404(upstream, gateway):
    gw = await gateway({"backends": backends(await upstream("m1"))})
    async with gw.openai() as client:
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="auto", messages=MSG)


async def test_configured_model_alias(upstream, gateway):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up), "models": {"m1": {"aliases": ["small"]}}})
    async with gw.openai() as client:
        await client.chat.completions.create(model="small", messages=MSG)
    assert up.requests[0].body["model"] == "m1"


async def test_rewrite_request_and_response_hooks(upstream, gateway):
    class Rewriter:
        @hookimpl
        def rewrite_request(self, ctx, body, backend):
            return {**body, "user": ctx.request_id}

        @hookimpl
        def rewrite_response(self, ctx, body, backend):
            body["rewritten_by"] = backend.id
            return body

    up = await upstream("m1", chunks=2)
    gw = await gateway({"backends": backends(up)}, plugins=(Rewriter(),))
    async with gw.openai() as client:
        raw = await client.chat.completions.with_raw_response.create(model="m1", messages=MSG)
        stream = await client.chat.completions.create(model="m1", messages=MSG, stream=True)
        chunks = [c async for c in stream]
    assert up.requests[0].body["user"] == raw.headers["x-request-id"]
    assert raw.parse().model_extra["rewritten_by"] == up.url
    assert all(c.model_extra["rewritten_by"] == up.url for c in chunks)


async def test_observers_receive_every_attempt(upstream, gateway):
    from tests.fakes import Fault

    a, b = await upstream("m1", name="a"), await upstream("m1", name="b")
    a.fault(Fault(status=503))
    gw = await gateway({"backends": backends(a, b), "balancing": "round_robin"})
    seen: list = []
    gw.app[OBSERVERS].append(seen.append)
    async with gw.openai() as client:
        await client.chat.completions.create(model="m1", messages=MSG)
    assert [(o.backend_id, o.status, o.error) for o in seen] == [
        (a.url, 503, "http_503"),
        (b.url, 200, None),
    ]
    assert seen[1].latency_s > 0 and seen[1].model == "m1"


async def test_lifecycle_routes_and_discovery_hooks(gateway):
    events = []

    class Source:
        name = "custom"

        async def run(self, registry):
            registry.replace(
                self.name, [Backend(id="x", model="from-plugin", url="http://127.0.0.1:1/v1")]
            )
            await asyncio.Event().wait()

    class Plugin:
        @hookimpl
        def startup(self, app):
            events.append("startup")

        @hookimpl
        async def shutdown(self, app):
            events.append("shutdown")

        @hookimpl
        def register_routes(self, register):
            async def hello(request):
                from aiohttp import web

                return web.json_response({"hello": True})

            async def broken(request):
                raise RuntimeError("do not show this")

            register("GET", "/hello", hello)
            register("GET", "/broken", broken)

        @hookimpl
        def register_discovery(self, register, settings):
            register(Source())

    gw = await gateway({}, plugins=(Plugin(),))
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(gw.url + "/hello") as r:
            assert await r.json() == {"hello": True}
        async with http.get(gw.url + "/broken") as r:
            body = await r.json()
            assert (
                r.status == 500
                and "do not show" not in str(body)
                and body["error"]["type"] == "server_error"
            )
        async with http.get(gw.url + "/v1/models") as r:
            assert [m["id"] for m in (await r.json())["data"]] == ["from-plugin"]
    await gw.runner.cleanup()
    assert events == ["startup", "shutdown"]


async def test_startup_gets_the_gateway_host(upstream, gateway):
    """Built-ins get the settings and the registry from ``host``, not from the app keys."""
    from switchgear.proxy.keys import REGISTRY, SETTINGS

    hosts = []

    class Plugin:
        @hookimpl
        def startup(self, host):
            hosts.append(host)

    gw = await gateway({"backends": backends(await upstream("m1"))}, plugins=(Plugin(),))
    [host] = hosts
    assert host.program == "gateway"
    assert host.settings is gw.app[SETTINGS] and host.registry is gw.app[REGISTRY]
    assert [b.model for b in host.registry.backends("m1")] == ["m1"]


async def test_custom_adapter_is_used(upstream, gateway):
    from switchgear.default_plugins.openai_adapter import OpenAIAdapter

    class Tagged(OpenAIAdapter):
        name = "tagged"

        def prepare(self, backend, ctx, body):
            return super().prepare(backend, ctx, {**body, "tagged": True})

    class Plugin:
        @hookimpl
        def adapter_for_backend(self, backend):
            return Tagged() if backend.protocol == "tagged" else None

    up = await upstream("m1")
    gw = await gateway({"backends": backends(up, protocol="tagged")}, plugins=(Plugin(),))
    async with gw.openai() as client:
        await client.chat.completions.create(model="m1", messages=MSG)
    assert up.requests[0].body["tagged"] is True


async def test_hook_register_adapters(upstream, gateway):
    """A registered protocol reaches its backend; a factory is resolved once per backend;
    a plugin's registration of a built-in protocol wins over the built-in's."""
    from switchgear.default_plugins.openai_adapter import OpenAIAdapter

    class Tagged(OpenAIAdapter):
        def __init__(self, tag):
            self.name = tag

        def prepare(self, backend, ctx, body):
            return super().prepare(backend, ctx, {**body, "tag": self.name})

    asked = []

    def per_backend(backend):
        asked.append(backend.id)
        return Tagged(backend.meta.get("tag", "none"))

    class Plugin:
        @hookimpl
        def register_adapters(self, register):
            register("tagged", Tagged("fixed"))
            register("per-backend", per_backend)
            register("openai", Tagged("mine"))  # before the trylast built-in: this one wins

    fixed, dynamic, plain = await upstream("m1"), await upstream("m2"), await upstream("m3")
    config = backends(fixed, protocol="tagged") + backends(dynamic, protocol="per-backend")
    config[1]["meta"] = {"tag": "from-meta"}
    gw = await gateway({"backends": config + backends(plain)}, plugins=(Plugin(),))
    async with gw.openai() as client:
        for model in ("m1", "m2", "m2", "m3"):
            await client.chat.completions.create(model=model, messages=MSG)
    assert fixed.requests[0].body["tag"] == "fixed"
    assert [r.body["tag"] for r in dynamic.requests] == ["from-meta", "from-meta"]
    assert len(asked) == 1  # two requests, one resolution
    assert plain.requests[0].body["tag"] == "mine"


# --- balancing strategies (the built-in order_backends plugin) ------------------------------


def _bs(n: int, **kw) -> list[Backend]:
    return [Backend(id=f"b{i}", model="m", url=f"http://b{i}", **kw) for i in range(n)]


def _order(strategy: str, backends: list[Backend], stats: BackendState) -> list[Backend]:
    ordered = balancing.order_backends(_ctx(strategy), backends, stats)
    assert ordered is not None
    return ordered


def _ctx(strategy: str) -> RequestContext:
    return RequestContext("r", "chat.completions", {}, "m", "m", attributes={"balancing": strategy})


def test_round_robin_rotates():
    bs, st = _bs(3), BackendState()
    firsts = [_order("round_robin", bs, st)[0].id for _ in range(6)]
    assert firsts == ["b0", "b1", "b2", "b0", "b1", "b2"]


def test_p2c_prefers_fewer_outstanding_and_lower_latency():
    bs, st = _bs(2), BackendState()
    for _ in range(3):
        st.started("b0")
    assert _order("p2c", bs, st)[0].id == "b1"
    st2 = BackendState()
    st2.success("b0", 0.5)
    st2.success("b1", 0.01)
    assert _order("p2c", bs, st2)[0].id == "b1"
    random.seed(1)
    many, st3 = _bs(5), BackendState()
    for b in many[1:]:
        st3.started(b.id)
    wins = sum(_order("p2c", many, st3)[0].id == "b0" for _ in range(200))
    assert wins > 60  # b0 wins whenever it is one of the two sampled (40 % of draws)


def test_weighted_follows_weights():
    random.seed(2)
    heavy = Backend(id="heavy", model="m", url="http://h", weight=9.0)
    light = Backend(id="light", model="m", url="http://l", weight=1.0)
    firsts = [_order("weighted", [heavy, light], BackendState())[0].id for _ in range(500)]
    assert 0.8 < firsts.count("heavy") / 500 < 0.97


def test_latency_strategy_picks_lowest_ewma_and_explores():
    random.seed(3)
    bs, st = _bs(3), BackendState()
    for b, lat in zip(bs, (0.3, 0.05, 0.2), strict=True):
        st.success(b.id, lat)
    firsts = [_order("latency", bs, st)[0].id for _ in range(300)]
    assert firsts.count("b1") > 240 and len(set(firsts)) > 1


def test_p2c_tries_an_idle_replica_again_at_a_low_load():
    # two equally fast replicas; b0's first answer was slow (a cold start). At a low load
    # neither has requests outstanding, so only their EWMAs are compared: without the
    # decay of a quiet replica's EWMA, b0 would never get another request
    random.seed(4)
    clock = [1000.0]
    bs, st = _bs(2), BackendState(clock=lambda: clock[0])
    st.success("b0", 0.5)
    st.success("b1", 0.03)
    firsts = []
    for _ in range(300):  # 5 requests/s for a minute, each answered in 30 ms
        clock[0] += 0.2
        first = _order("p2c", bs, st)[0].id
        st.success(first, 0.03)
        firsts.append(first)
    # tried again once its EWMA has decayed to b1's: 0.5 s halved for about 20 s (4 half
    # lives of 5 s), not before
    again = firsts.index("b0")
    assert 90 <= again < 110
    assert firsts[again:].count("b0") >= len(firsts[again:]) // 3  # and it shares the load
