"""Mid-stream recovery: a cut or stalled chat stream continues on the next backend or model."""

from __future__ import annotations

from typing import Any

import orjson

from tests.fakes import Fault
from tests.hardening.conftest import backends

BODY = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def chain(cont1: bool = True, cont2: bool = True) -> dict[str, Any]:
    return {
        "m1": {"fallback": ["m2"], "supports_continuation": cont1},
        "m2": {"supports_continuation": cont2},
    }


async def events(http, url: str, body: dict[str, Any]) -> list[Any]:
    async with http.post(url + "/v1/chat/completions", json=body) as r:
        assert r.status == 200
        out = []
        async for line in r.content:
            if line.startswith(b"data: "):
                data = line[6:].strip()
                out.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
        return out


def text_of(evs: list[Any]) -> str:
    return "".join(
        c["delta"].get("content") or ""
        for e in evs
        if isinstance(e, dict)
        for c in e.get("choices", [])
    )


async def test_cut_stream_continues_on_the_fallback_model(upstream, gateway, http):
    a = await upstream("m1", name="a", chunks=4)
    b = await upstream("m2", name="b", chunks=3)
    a.always = Fault(cut_after=2)
    gw = await gateway({"backends": backends(a, b), "models": chain()})
    evs = await events(http, gw.url, {**BODY, "max_tokens": 10})
    assert evs[-1] == "[DONE]" and not any("error" in e for e in evs[:-1])
    assert text_of(evs) == "a0 a1 b0 b1 b2 "
    chunks = evs[:-1]
    assert {c["id"] for c in chunks} == {"chatcmpl-fake"}
    assert {c["model"] for c in chunks} == {"m1"}  # the client's model throughout
    assert not any("role" in c["choices"][0]["delta"] for c in chunks[1:])
    sent = b.requests[-1].body
    assert sent["messages"][-1] == {"role": "assistant", "content": "a0 a1 "}
    assert sent["continue_final_message"] is True and sent["add_generation_prompt"] is False
    assert sent["model"] == "m2" and sent["max_tokens"] == 8


async def test_continuation_goes_to_another_replica_first(upstream, gateway, http):
    a = await upstream("m1", name="a", chunks=4)
    a2 = await upstream("m1", name="a2", chunks=2)
    b = await upstream("m2", name="b")
    a.always = Fault(cut_after=1)
    a2.always = Fault(cut_after=1)  # whichever replica starts, the other is cut as well...
    gw = await gateway({"backends": backends(a, a2, b), "models": chain()})
    evs = await events(http, gw.url, BODY)
    # ...so the answer hops replica → replica → fallback model, in one stream.
    assert evs[-1] == "[DONE]"
    assert len(a.requests) == len(a2.requests) == 1
    assert b.requests[-1].body["messages"][-1]["content"] in ("a0 a20 ", "a20 a0 ")
    assert text_of(evs).endswith("b0 b1 b2 b3 ")


async def test_usage_total_counts_text_before_the_cut(upstream, gateway, http):
    a = await upstream("m1", name="a", chunks=5)
    b = await upstream("m2", name="b", chunks=4)
    a.always = Fault(cut_after=3)
    gw = await gateway({"backends": backends(a, b), "models": chain()})
    body = {**BODY, "stream_options": {"include_usage": True}}
    evs = await events(http, gw.url, body)
    usage = [e["usage"] for e in evs[:-1] if e.get("usage")]
    # The continuation's own usage is prompt 3 / completion 4; 3 chunks came before the cut.
    assert usage == [{"prompt_tokens": 0, "completion_tokens": 7, "total_tokens": 7}]


async def test_stalled_stream_continues_after_the_idle_deadline(upstream, gateway, http):
    a = await upstream("m1", name="a", chunks=4)
    b = await upstream("m2", name="b", chunks=2)
    a.always = Fault(stall_after=2)
    gw = await gateway({"backends": backends(a, b), "models": chain(), "timeouts": {"idle": 0.3}})
    evs = await events(http, gw.url, BODY)
    assert evs[-1] == "[DONE]" and text_of(evs) == "a0 a1 b0 b1 "
    await a.wait_disconnect()  # the stalled backend was hung up on, so it stops generating


async def test_no_continuation_to_a_model_that_does_not_support_it(upstream, gateway, http):
    a = await upstream("m1", name="a", chunks=4)
    b = await upstream("m2", name="b")
    a.always = Fault(cut_after=2)
    gw = await gateway({"backends": backends(a, b), "models": chain(cont2=False)})
    evs = await events(http, gw.url, BODY)
    assert "[DONE]" not in evs
    err = evs[-1]["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "upstream_error"
    assert b.requests == []  # never sent a continuation it would treat as a new turn


async def test_no_continuation_when_every_backend_fails(upstream, gateway, http):
    a = await upstream("m1", name="a", chunks=4)
    b = await upstream("m2", name="b", chunks=4)
    a.always = Fault(cut_after=2)
    b.always = Fault(status=503)
    gw = await gateway({"backends": backends(a, b), "models": chain()})
    evs = await events(http, gw.url, BODY)
    assert "[DONE]" not in evs and evs[-1]["error"]["type"] == "upstream_error"
    assert text_of(evs) == "a0 a1 "


async def test_several_choices_are_never_continued(upstream, gateway, http):
    a = await upstream("m1", name="a", chunks=4)
    b = await upstream("m2", name="b")
    a.always = Fault(cut_after=2)
    gw = await gateway({"backends": backends(a, b), "models": chain()})
    evs = await events(http, gw.url, {**BODY, "n": 2})
    assert "[DONE]" not in evs and "error" in evs[-1] and b.requests == []


async def test_openai_client_sees_one_complete_answer(upstream, gateway):
    a = await upstream("m1", name="a", chunks=4)
    b = await upstream("m2", name="b", chunks=2)
    a.always = Fault(cut_after=3)
    gw = await gateway({"backends": backends(a, b), "models": chain()})
    client = gw.openai()
    stream = await client.chat.completions.create(
        model="m1", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    parts, ids, finish = [], set(), None
    async for chunk in stream:
        ids.add(chunk.id)
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    await client.close()
    assert "".join(parts) == "a0 a1 a2 b0 b1 " and ids == {"chatcmpl-fake"} and finish == "stop"
