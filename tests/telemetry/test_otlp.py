"""Export over OTLP/HTTP to a real receiver on loopback that decodes the protobuf payload."""

from __future__ import annotations

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.helpers import poll_until
from tests.telemetry.conftest import OTLPReceiver, backends

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


def _attributes(span: Span) -> dict[str, object]:
    out: dict[str, object] = {}
    for kv in span.attributes:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


async def test_spans_reach_an_otlp_http_receiver(upstream, gateway, otlp_receiver: OTLPReceiver):
    up = await upstream("m1", name="a")
    tracing = {
        "enabled": True,
        "endpoint": otlp_receiver.url,
        "service_name": "gateway-eu",
        "headers": {"x-ingest-token": "t0ken"},
        "export_delay_ms": 20,
    }
    gw = await gateway({"backends": backends(up), "tracing": tracing})
    async with gw.openai() as client:
        await client.chat.completions.create(
            model="m1",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
        )
    spans = await poll_until(
        lambda: len(otlp_receiver.spans()) >= 2 and otlp_receiver.spans(),
        what="two spans exported",
    )
    by_kind = {s.kind: s for s in spans}
    server, attempt = by_kind[Span.SPAN_KIND_SERVER], by_kind[Span.SPAN_KIND_CLIENT]
    assert server.trace_id.hex() == CLIENT_TRACE
    assert server.parent_span_id.hex() == CLIENT_SPAN
    assert attempt.trace_id == server.trace_id
    assert attempt.parent_span_id == server.span_id
    assert server.name == "chat m1" and attempt.name == "chat m1"
    s, a = _attributes(server), _attributes(attempt)
    assert s["gen_ai.operation.name"] == "chat"
    assert s["http.response.status_code"] == 200
    assert s["gen_ai.usage.input_tokens"] == 3
    assert a["gen_ai.request.model"] == "m1"
    assert a["server.port"] == up.port
    resource = otlp_receiver.exports[0].resource_spans[0].resource
    service = {kv.key: kv.value.string_value for kv in resource.attributes}["service.name"]
    assert service == "gateway-eu"
    assert otlp_receiver.headers[0]["x-ingest-token"] == "t0ken"
    # the backend saw the exported attempt span as its parent
    parent = up.requests[-1].headers["traceparent"].split("-")[2]
    assert parent == attempt.span_id.hex()


async def test_shutdown_flushes_what_is_queued(upstream, gateway, otlp_receiver: OTLPReceiver):
    up = await upstream("m1", name="a")
    tracing = {"enabled": True, "endpoint": otlp_receiver.url, "export_delay_ms": 600000}
    gw = await gateway({"backends": backends(up), "tracing": tracing})
    async with gw.openai() as client:
        await client.completions.create(model="m1", prompt="hi")
    assert otlp_receiver.spans() == []  # still queued: the batch waits for its delay
    await gw.runner.cleanup()  # the app's cleanup context flushes the exporter
    names = sorted(s.name for s in otlp_receiver.spans())
    assert names == ["text_completion m1", "text_completion m1"]
