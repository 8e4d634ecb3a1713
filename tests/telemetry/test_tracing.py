"""Tracing with the SDK's in-memory exporter: spans, GenAI attributes, events, propagation."""

from __future__ import annotations

import openai
import pytest

from switchgear.proxy import keys
from switchgear.telemetry import Tracing
from tests.fakes import Fault
from tests.helpers import poll_until
from tests.telemetry.conftest import TRACING_IN_MEMORY, backends, by_kind, record_spans

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


def _traceparent(value: str) -> tuple[str, str, str]:
    version, trace_id, parent, flags = value.split("-")
    assert version == "00"
    return trace_id, parent, flags


async def test_server_and_client_spans_follow_genai_conventions(upstream, gateway):
    up = await upstream("m1", name="a")
    gw = await gateway({"backends": backends(up), **TRACING_IN_MEMORY})
    spans = record_spans(gw)
    async with gw.openai() as client:
        answer = await client.chat.completions.create(
            model="m1",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=7,
            extra_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
        )
    assert answer.choices[0].message.content == "hello from a"
    finished = await poll_until(
        lambda: len(spans.get_finished_spans()) >= 2 and spans.get_finished_spans()
    )
    [server] = by_kind(finished, "SERVER")
    [attempt] = by_kind(finished, "CLIENT")

    # the client's traceparent is the server span's parent
    assert format(server.context.trace_id, "032x") == CLIENT_TRACE
    assert server.parent is not None and format(server.parent.span_id, "016x") == CLIENT_SPAN
    assert server.name == "chat m1"
    a = server.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "m1"
    assert a["gen_ai.response.model"] == "m1"
    assert a["gen_ai.usage.input_tokens"] == 3
    assert a["gen_ai.usage.output_tokens"] == up.chunks
    assert a["gen_ai.provider.name"] == "switchgear"
    assert a["http.response.status_code"] == 200
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == gw.port
    assert "error.type" not in a
    assert a["switchgear.request_id"] == answer._request_id

    # one client span per attempt, a child of the server span
    assert attempt.parent is not None and attempt.parent.span_id == server.context.span_id
    assert attempt.context.trace_id == server.context.trace_id
    assert attempt.name == "chat m1"
    b = attempt.attributes
    assert b["gen_ai.operation.name"] == "chat"
    assert b["gen_ai.provider.name"] == "openai" and b["gen_ai.system"] == "openai"
    assert b["gen_ai.request.model"] == "m1" and b["gen_ai.response.model"] == "m1"
    assert b["gen_ai.request.max_tokens"] == 7
    assert b["gen_ai.usage.output_tokens"] == up.chunks
    assert b["server.address"] == "127.0.0.1" and b["server.port"] == up.port
    assert b["http.response.status_code"] == 200

    # the backend got the attempt's span as its parent, in the client's trace
    trace_id, parent, flags = _traceparent(up.requests[-1].headers["traceparent"])
    assert trace_id == CLIENT_TRACE
    assert parent == format(attempt.context.span_id, "016x")
    assert flags == "01"


async def test_a_retry_is_an_event_and_each_attempt_a_span(upstream, gateway):
    up = await upstream("m1", name="a")
    up.fault(Fault(status=503))
    gw = await gateway({"backends": backends(up), **TRACING_IN_MEMORY})
    spans = record_spans(gw)
    async with gw.openai() as client:
        await client.chat.completions.create(
            model="m1", messages=[{"role": "user", "content": "hi"}]
        )
    finished = await poll_until(
        lambda: len(spans.get_finished_spans()) >= 3 and spans.get_finished_spans()
    )
    [server] = by_kind(finished, "SERVER")
    failed, answered = sorted(by_kind(finished, "CLIENT"), key=lambda s: s.start_time or 0)
    assert failed.attributes["http.response.status_code"] == 503
    assert failed.attributes["error.type"] == "http_503"
    assert failed.status.status_code.name == "ERROR"
    assert answered.attributes["http.response.status_code"] == 200
    assert "error.type" not in answered.attributes
    retries = [e for e in server.events if e.name == "switchgear.retry"]
    assert len(retries) == 1 and retries[0].attributes["gen_ai.request.model"] == "m1"
    # each attempt propagated its own span
    parents = [_traceparent(r.headers["traceparent"])[1] for r in up.requests]
    assert parents == [format(s.context.span_id, "016x") for s in (failed, answered)]


async def test_a_fallback_is_an_event_and_names_the_answering_model(upstream, gateway):
    first = await upstream("m1", name="a")
    first.always = Fault(status=503)
    second = await upstream("m2", name="b")
    config = {
        "backends": backends(first, second),
        "models": {"m1": {"fallback": ["m2"]}},
        "retries": {"attempts": 2, "backoff_base": 0.001, "backoff_max": 0.002},
        **TRACING_IN_MEMORY,
    }
    gw = await gateway(config)
    spans = record_spans(gw)
    async with gw.openai() as client:
        answer = await client.chat.completions.create(
            model="m1", messages=[{"role": "user", "content": "hi"}]
        )
    assert answer.model == "m2"
    finished = await poll_until(
        lambda: len(spans.get_finished_spans()) >= 4 and spans.get_finished_spans()
    )
    [server] = by_kind(finished, "SERVER")
    attempts = sorted(by_kind(finished, "CLIENT"), key=lambda s: s.start_time or 0)
    assert [s.attributes["gen_ai.request.model"] for s in attempts] == ["m1", "m1", "m2"]
    assert server.attributes["gen_ai.request.model"] == "m1"
    assert server.attributes["gen_ai.response.model"] == "m2"
    names = [e.name for e in server.events]
    assert names == ["switchgear.retry", "switchgear.fallback"]
    fallback = server.events[-1]
    assert dict(fallback.attributes or {}) == {"from": "m1", "to": "m2"}


async def test_a_continued_stream_is_an_event(upstream, gateway):
    cut = await upstream("m1", name="a", chunks=6)
    cut.always = Fault(cut_after=3)
    other = await upstream("m1", name="b", chunks=6)
    config = {
        "backends": backends(cut, other),
        "models": {"m1": {"supports_continuation": True}},
        "balancing": "round_robin",
        **TRACING_IN_MEMORY,
    }
    gw = await gateway(config)
    spans = record_spans(gw)
    # round robin: make the cutting backend the next one for the streamed request
    async with gw.openai() as client:
        for _ in range(2):
            stream = await client.chat.completions.create(
                model="m1", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            if "a0" in text:
                break
    assert text.startswith("a0 a1 a2 ")
    servers = await poll_until(
        lambda: [
            s
            for s in by_kind(spans.get_finished_spans(), "SERVER")
            if any(e.name == "switchgear.continuation" for e in s.events)
        ]
    )
    [event] = [e for e in servers[-1].events if e.name == "switchgear.continuation"]
    assert event.attributes["from"] == cut.url and event.attributes["to"] == other.url
    assert event.attributes["switchgear.continued"] is True
    assert event.attributes["switchgear.chunks_before"] == 3


async def test_a_stream_attempt_records_its_first_token(upstream, gateway):
    up = await upstream("m1", name="a", chunks=5)
    gw = await gateway({"backends": backends(up), **TRACING_IN_MEMORY})
    spans = record_spans(gw)
    async with gw.openai() as client:
        stream = await client.chat.completions.create(
            model="m1",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        async for _ in stream:
            pass
    finished = await poll_until(
        lambda: len(spans.get_finished_spans()) >= 2 and spans.get_finished_spans()
    )
    [server] = by_kind(finished, "SERVER")
    [attempt] = by_kind(finished, "CLIENT")
    assert [e.name for e in attempt.events] == ["gen_ai.first_token"]
    assert attempt.attributes["gen_ai.usage.output_tokens"] == 5
    assert server.attributes["gen_ai.usage.output_tokens"] == 5
    assert server.attributes["gen_ai.usage.input_tokens"] == 3
    # a new trace when the client sent no traceparent
    assert server.parent is None


async def test_a_refused_request_is_a_server_span_with_its_error(upstream, gateway):
    up = await upstream("m1", name="a")
    gw = await gateway(
        {"backends": backends(up), "auth": {"api_keys": ["sk-good"]}, **TRACING_IN_MEMORY}
    )
    spans = record_spans(gw)
    async with gw.openai(api_key="sk-bad") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(
                model="m1", messages=[{"role": "user", "content": "hi"}]
            )
    [server] = await poll_until(lambda: spans.get_finished_spans())
    assert server.kind.name == "SERVER"
    assert server.attributes["http.response.status_code"] == 401
    assert server.attributes["error.type"] == "401"
    assert up.requests == []


async def test_tracing_is_off_by_default_and_adds_no_header(upstream, gateway):
    up = await upstream("m1", name="a")
    gw = await gateway({"backends": backends(up)})
    assert type(gw.app[keys.TRACING]) is Tracing and not gw.app[keys.TRACING].enabled
    async with gw.openai() as client:
        await client.chat.completions.create(
            model="m1",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
        )
    assert "traceparent" not in up.requests[-1].headers
