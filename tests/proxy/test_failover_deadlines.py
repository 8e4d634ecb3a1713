"""First-byte deadlines: no retry on a silent backend, one budget per request, fallback gets the rest."""

from __future__ import annotations

import orjson

from switchgear.proxy.budget import Budget, first_byte
from switchgear.settings import parse_settings
from tests.fakes import Fault
from tests.proxy.conftest import backends

MSG = [{"role": "user", "content": "hi"}]
CHAIN = {"m1": {"fallback": ["m2"]}}


async def chat(http, gw, stream: bool = True) -> tuple[int, dict[str, str], bytes]:
    body = {"model": "m1", "messages": MSG, "stream": stream}
    async with http.post(gw.url + "/v1/chat/completions", json=body) as r:
        return r.status, dict(r.headers), await r.read()


async def test_a_silent_backend_is_not_retried_and_the_fallback_answers(upstream, gateway, http):
    a = await upstream("m1", name="a")
    b = await upstream("m2", name="b")
    a.always = Fault(silence=True)
    gw = await gateway(
        {"backends": backends(a, b), "models": CHAIN, "timeouts": {"stream_ttft": 0.3}}
    )
    status, headers, raw = await chat(http, gw)
    assert status == 200 and b"b0 " in raw and raw.endswith(b"data: [DONE]\n\n")
    assert headers["x-switchgear-fallback"] == "m1 -> m2"
    assert len(a.requests) == 1  # retries: 3, but never on the backend that stayed silent


async def test_a_slow_first_token_fails_over(upstream, gateway, http):
    a = await upstream("m1", name="a")
    b = await upstream("m2", name="b")
    a.always = Fault(slow_first_token=5.0)  # headers at once, the first chunk far too late
    gw = await gateway(
        {"backends": backends(a, b), "models": CHAIN, "timeouts": {"stream_ttft": 0.3}}
    )
    status, headers, raw = await chat(http, gw)
    assert status == 200 and b"b0 " in raw and headers["x-switchgear-fallback"] == "m1 -> m2"
    assert len(a.requests) == 1


async def test_the_request_deadline_bounds_retries_and_leaves_the_rest_to_the_fallback(
    upstream, gateway, http
):
    replicas = [await upstream("m1", name=f"a{i}") for i in range(3)]
    for up in replicas:
        up.always = Fault(silence=True)
    b = await upstream("m2", name="b")
    gw = await gateway(
        {
            "backends": backends(*replicas, b),
            "models": CHAIN,
            # m1 may use half of 1.2 s: one attempt of 0.4 s, then one of what is left
            "timeouts": {"ttft": 0.4, "request": 1.2, "model_share": 0.5},
        }
    )
    status, headers, raw = await chat(http, gw)
    assert status == 200 and b"b0 " in raw and headers["x-switchgear-fallback"] == "m1 -> m2"
    assert sum(len(up.requests) for up in replicas) == 2  # not 3: the budget ran out


async def test_without_fallback_the_deadline_ends_the_request_with_504(upstream, gateway, http):
    replicas = [await upstream("m1", name=f"a{i}") for i in range(3)]
    for up in replicas:
        up.always = Fault(silence=True)
    gw = await gateway(
        {"backends": backends(*replicas), "timeouts": {"ttft": 0.4, "request_json": 0.6}}
    )
    status, _, raw = await chat(http, gw, stream=False)
    assert status == 504 and orjson.loads(raw)["error"]["code"] == "upstream_timeout"
    assert sum(len(up.requests) for up in replicas) == 2


def test_default_budget_serves_a_silent_primary_from_the_fallback_within_35_s():
    """The defaults' arithmetic, on a fake clock: every attempt of the primary times out."""
    timeouts = parse_settings({}).timeouts
    assert first_byte(timeouts, stream=True) == 15.0 and first_byte(timeouts, stream=False) == 60.0
    now = [0.0]
    budget = Budget.of(timeouts, stream=True, clock=lambda: now[0])
    until = budget.model_deadline(last=False)
    for _ in range(20):  # any number of silent replicas of the primary
        wait = budget.attempt_timeout(first_byte(timeouts, stream=True), until)
        if wait <= 0:
            break
        now[0] += wait
    fallback_starts = now[0]
    assert fallback_starts == 30.0  # two attempts of 15 s, then the primary's share is spent
    fallback_until = budget.model_deadline(last=True)
    assert fallback_until - fallback_starts == 30.0  # two full attempts for the fallback
    # a fallback that answers within 5 s of its start serves the client within 35 s
    assert fallback_starts + 5.0 <= 35.0
    assert budget.attempt_timeout(15.0, fallback_until) == 15.0
