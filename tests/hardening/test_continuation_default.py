"""Stream continuation without configuration: on backends that advertise it, never elsewhere."""

from __future__ import annotations

import pytest

from switchgear.worker.views.models import model_card
from tests.fakes import Fault
from tests.hardening.test_resume import BODY, events, text_of


@pytest.mark.parametrize(
    "extra",
    [{"meta": {"supports_continuation": "true"}}, {"protocol": "vllm"}],
    ids=["worker-meta", "vllm-protocol"],
)
async def test_an_advertising_backend_continues_a_cut_stream(upstream, gateway, http, extra):
    a = await upstream("m1", name="a", chunks=4)
    b = await upstream("m1", name="b", chunks=3)
    a.always = Fault(cut_after=2)
    ups = [a, b]
    gw = await gateway(
        {
            "backends": [{"model": u.model, "url": u.url, **extra} for u in ups],
            "balancing": "round_robin",
        }
    )
    evs = await events(http, gw.url, BODY)
    if not a.requests:  # round robin started on b: nothing was cut, ask once more
        evs = await events(http, gw.url, BODY)
    assert evs[-1] == "[DONE]" and not any("error" in e for e in evs[:-1])
    assert text_of(evs) == "a0 a1 b0 b1 b2 "
    sent = b.requests[-1].body
    assert sent["continue_final_message"] is True
    assert sent["messages"][-1] == {"role": "assistant", "content": "a0 a1 "}


async def test_a_backend_that_does_not_advertise_gets_no_continuation(upstream, gateway, http):
    a = await upstream("m1", name="a", chunks=4)
    b = await upstream("m1", name="b", chunks=3)
    a.always = Fault(cut_after=2)
    gw = await gateway(
        {
            "backends": [
                {"model": "m1", "url": a.url, "meta": {"supports_continuation": "true"}},
                {"model": "m1", "url": b.url},  # plain OpenAI server: would start a new turn
            ],
            "balancing": "round_robin",
        }
    )
    evs = await events(http, gw.url, BODY)
    if not a.requests:
        evs = await events(http, gw.url, BODY)
    assert "[DONE]" not in evs and "error" in evs[-1]
    assert not any(r.body.get("continue_final_message") for r in b.requests)


def test_the_worker_advertises_continuation_in_v1_models():
    class Spec:
        languages = ("en",)
        model_name_or_path = "tiny"

    class Bundle:
        name, context_length, quantization, dtype, device, fmt = "t", 512, None, "fp32", "cpu", "st"
        spec = Spec()

    assert model_card(Bundle())["metadata"]["supports_continuation"] is True
