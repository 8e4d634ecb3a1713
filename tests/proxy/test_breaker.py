"""The circuit breaker opens, probes after the cool-down and closes; traffic returns by itself."""

from __future__ import annotations

import openai
import pytest

from switchgear.proxy.breaker import CLOSED, HALF_OPEN, OPEN, BackendState
from switchgear.proxy.keys import BACKEND_STATE
from tests.fakes import Fault
from tests.proxy.conftest import backends

MSG = [{"role": "user", "content": "hi"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_states():
    clock = Clock()
    s = BackendState(failures=2, cooldown=10, clock=clock)
    s.failure("b", "x")
    assert s.get("b").state == CLOSED and s.admit("b")
    s.failure("b", "x")
    assert s.get("b").state == OPEN and not s.admit("b") and not s.healthy("b")
    clock.now += 10
    assert s.healthy("b")
    assert s.admit("b") and s.get("b").state == HALF_OPEN
    assert not s.admit("b")  # one probe at a time
    s.failure("b", "probe failed")
    assert s.get("b").state == OPEN and not s.admit("b")
    clock.now += 10
    assert s.admit("b")
    s.success("b", 0.1)
    assert s.get("b").state == CLOSED and s.admit("b") and s.admit("b")


def test_success_resets_the_failure_count():
    s = BackendState(failures=2, cooldown=10)
    s.failure("b", "x")
    s.success("b")
    s.failure("b", "x")
    assert s.get("b").state == CLOSED


def test_default_cooldown_is_at_most_25s():
    from switchgear.settings import parse_settings

    assert parse_settings({}).breaker.cooldown <= 25


async def test_breaker_opens_then_probe_closes_and_traffic_returns(upstream, gateway):
    primary, spare = await upstream("m1", name="primary"), await upstream("m1", name="spare")
    primary.always = Fault(status=500)
    gw = await gateway(
        {
            "backends": backends(primary, spare),
            "balancing": "round_robin",
            "breaker": {"failures": 2, "cooldown": 5},
            "retries": {"attempts": 2},
        }
    )
    state = gw.app[BACKEND_STATE]
    clock = Clock()
    state.clock = clock
    async with gw.openai() as client:
        for _ in range(4):  # round robin puts primary first every other request
            out = await client.chat.completions.create(model="m1", messages=MSG)
            assert out.choices[0].message.content == "hello from spare"
        assert state.get(primary.url).state == OPEN
        seen = len(primary.requests)
        for _ in range(4):
            await client.chat.completions.create(model="m1", messages=MSG)
        assert len(primary.requests) == seen  # open: no traffic at all
        primary.always = None  # it recovers
        clock.now += 5  # the cool-down passes
        answers = {
            (await client.chat.completions.create(model="m1", messages=MSG))
            .choices[0]
            .message.content
            for _ in range(4)
        }
    assert state.get(primary.url).state == CLOSED
    assert "hello from primary" in answers


async def test_open_breaker_on_only_backend_is_503(upstream, gateway):
    up = await upstream("m1")
    up.always = Fault(status=502)
    gw = await gateway(
        {"backends": backends(up), "breaker": {"failures": 3}, "retries": {"attempts": 3}}
    )
    async with gw.openai() as client:
        with pytest.raises(openai.APIStatusError) as first:
            await client.chat.completions.create(model="m1", messages=MSG)
        with pytest.raises(openai.InternalServerError) as second:
            await client.chat.completions.create(model="m1", messages=MSG)
    assert first.value.status_code == 502 and second.value.status_code == 503
    assert len(up.requests) == 3


async def test_eject_and_readmit_through_admin_api(upstream, gateway, http):
    from urllib.parse import quote

    up = await upstream("m1")
    gw = await gateway({"backends": backends(up), "auth": {"admin_key": "adm"}})
    hdr = {"Authorization": "Bearer adm"}
    bid = quote(up.url, safe="")
    async with http.post(
        f"{gw.url}/admin/backends/{bid}/eject", json={"reason": "drill"}, headers=hdr
    ) as r:
        assert r.status == 200 and (await r.json())["ejected"] == "drill"
    async with gw.openai() as client:
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="m1", messages=MSG)
        async with http.post(f"{gw.url}/admin/backends/{bid}/readmit", headers=hdr) as r:
            assert r.status == 200 and (await r.json())["healthy"] is True
        out = await client.chat.completions.create(model="m1", messages=MSG)
    assert out.choices[0].message.content


async def test_a_probe_refused_before_the_call_is_released(upstream, gateway):
    """A plugin refusing the request the half-open probe was admitted for (APIError before
    any byte reaches the backend) judges nothing: the next request probes again and closes."""
    from switchgear import hookimpl
    from switchgear.errors import InvalidRequest

    class Refuser:
        refuse = False

        @hookimpl
        def rewrite_request(self, ctx, body, backend):
            if self.refuse:
                raise InvalidRequest("refused by policy")
            return None

    refuser = Refuser()
    up = await upstream("m1")
    gw = await gateway(
        {"backends": backends(up), "breaker": {"failures": 1, "cooldown": 5}},
        plugins=(refuser,),
    )
    state = gw.app[BACKEND_STATE]
    clock = Clock()
    state.clock = clock
    state.failure(up.url, "drill")
    assert state.get(up.url).state == OPEN
    clock.now += 5
    async with gw.openai() as client:
        refuser.refuse = True
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="m1", messages=MSG)
        assert state.healthy(up.url)  # the probe slot is free again
        refuser.refuse = False
        out = await client.chat.completions.create(model="m1", messages=MSG)
    assert out.choices[0].message.content and state.get(up.url).state == CLOSED
