"""Stream relay: chunk by chunk, in-band errors after the first byte, deadlines, disconnects."""

from __future__ import annotations

import asyncio

import openai
import orjson
import pytest

from switchgear.proxy.keys import BACKEND_STATE
from tests.fakes import Fault
from tests.proxy.conftest import backends

BODY = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "stream": True}


async def read_events(resp) -> list[bytes]:
    """The ``data:`` payloads of an SSE response, in order."""
    events = []
    async for line in resp.content:
        if line.startswith(b"data: "):
            events.append(line[6:].strip())
    return events


async def test_chunks_are_relayed_before_the_upstream_finishes(upstream, gateway, http):
    up = await upstream("m1", name="a", chunks=3)
    up.always = Fault(
        stall_after=2
    )  # two chunks, then silence: a buffering proxy would show nothing
    gw = await gateway({"backends": backends(up), "timeouts": {"idle": 5.0}})
    async with http.post(gw.url + "/v1/chat/completions", json=BODY) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        first = await r.content.readline()
        assert orjson.loads(first[6:])["choices"][0]["delta"]["content"] == "a0 "


async def test_cut_midway_gives_in_band_error_and_no_done(upstream, gateway, http):
    up = await upstream("m1", chunks=4)
    up.always = Fault(cut_after=2)
    gw = await gateway({"backends": backends(up)})
    async with http.post(gw.url + "/v1/chat/completions", json=BODY) as r:
        assert r.status == 200
        events = await read_events(r)
    assert len(events) == 3 and b"[DONE]" not in events
    err = orjson.loads(events[-1])["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "upstream_error"
    assert len(up.requests) == 1  # never retried after the first byte
    assert gw.app[BACKEND_STATE].get(up.url).consecutive_failures == 1


async def test_stall_midway_hits_the_idle_deadline(upstream, gateway, http):
    up = await upstream("m1", chunks=4)
    up.always = Fault(stall_after=1)
    gw = await gateway({"backends": backends(up), "timeouts": {"idle": 0.2}})
    async with http.post(gw.url + "/v1/chat/completions", json=BODY) as r:
        events = await read_events(r)
    assert b"[DONE]" not in events
    assert orjson.loads(events[-1])["error"]["type"] == "timeout"
    await up.wait_disconnect()  # the stalled upstream connection was closed


async def test_total_deadline(upstream, gateway, http):
    up = await upstream("m1", chunks=50)
    up.always = Fault(chunk_delay=0.05)
    gw = await gateway({"backends": backends(up), "timeouts": {"total": 0.5, "idle": 1.0}})
    async with http.post(gw.url + "/v1/chat/completions", json=BODY) as r:
        events = await read_events(r)
    assert 1 < len(events) < 50 and b"[DONE]" not in events
    assert "error" in orjson.loads(events[-1])


async def test_missing_done_after_the_finish_reason_is_finished(upstream, gateway, http):
    up = await upstream("m1", chunks=2)
    up.always = Fault(omit_done=True)  # the last chunk carries finish_reason: the answer is whole
    gw = await gateway({"backends": backends(up)})
    async with http.post(gw.url + "/v1/chat/completions", json=BODY) as r:
        events = await read_events(r)
    assert len(events) == 3 and events[-1] == b"[DONE]"
    assert not any(b'"error"' in e for e in events)


async def test_malformed_chunk_is_dropped_not_fatal(upstream, gateway, http):
    up = await upstream("m1", name="a", chunks=3)
    up.always = Fault(malformed_at=1)
    gw = await gateway({"backends": backends(up)})
    async with http.post(gw.url + "/v1/chat/completions", json=BODY) as r:
        events = await read_events(r)
    assert events[-1] == b"[DONE]"
    texts = [orjson.loads(e)["choices"][0]["delta"]["content"] for e in events[:-1]]
    assert texts == ["a0 ", "a1 ", "a2 "]


async def test_sdk_raises_on_in_band_error(upstream, gateway):
    up = await upstream("m1", chunks=4)
    up.always = Fault(cut_after=2)
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        stream = await client.chat.completions.create(**BODY)
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass


async def test_ttft_deadline_before_first_chunk_fails_over(upstream, gateway):
    a, b = await upstream("m1", name="a"), await upstream("m1", name="b")
    a.always = Fault(first_delay=5.0)  # headers at once, first chunk too late
    gw = await gateway(
        {"backends": backends(a, b), "balancing": "round_robin", "timeouts": {"ttft": 0.5}}
    )
    async with gw.openai() as client:
        stream = await client.chat.completions.create(**BODY)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text.startswith("b0")
    assert gw.app[BACKEND_STATE].get(a.url).consecutive_failures == 1
    assert gw.app[BACKEND_STATE].get(a.url).last_error == "ttft_timeout"
    await a.wait_disconnect()


async def test_client_disconnect_cancels_upstream_non_streaming(upstream, gateway, http):
    up = await upstream("m1")
    up.always = Fault(silence=True)
    gw = await gateway({"backends": backends(up), "timeouts": {"ttft": 30.0}})
    task = asyncio.create_task(
        http.post(gw.url + "/v1/chat/completions", json={**BODY, "stream": False})
    )
    await up.wait_requests(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await up.wait_disconnect()
    assert up.in_flight == 0


async def test_client_disconnect_cancels_upstream_stream(upstream, gateway, http):
    up = await upstream("m1", chunks=4)
    up.always = Fault(stall_after=1)
    gw = await gateway({"backends": backends(up), "timeouts": {"idle": 30.0}})
    r = await http.post(gw.url + "/v1/chat/completions", json=BODY)
    await r.content.readline()
    r.close()
    await up.wait_disconnect()
    state = gw.app[BACKEND_STATE].get(up.url)
    assert state.consecutive_failures == 0  # a client leaving is not the backend's fault


async def test_concurrent_requests_spread_and_all_succeed(upstream, gateway):
    a, b = await upstream("m1", name="a"), await upstream("m1", name="b")
    a.always = b.always = Fault(first_delay=0.02)
    gw = await gateway({"backends": backends(a, b), "timeouts": {"ttft": 10.0}})  # 2 shared cores
    async with gw.openai() as client:
        outs = await asyncio.gather(
            *[
                client.chat.completions.create(model="m1", messages=BODY["messages"])
                for _ in range(40)
            ]
        )
    assert len(outs) == 40 and all(o.choices[0].message.content for o in outs)
    assert len(a.requests) > 5 and len(b.requests) > 5
    state = gw.app[BACKEND_STATE]
    assert state.outstanding(a.url) == 0 and state.outstanding(b.url) == 0


async def test_finished_streams_return_the_connection_to_the_pool(upstream, gateway):
    up = await upstream("m1", chunks=3)
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        for _ in range(3):
            stream = await client.chat.completions.create(**BODY)
            _ = [c async for c in stream]
    assert len({r.peer for r in up.requests}) == 1
