"""Fixtures of the tracing, metrics and body-limit tests: the gateway fixtures of
tests/proxy, spans recorded in memory, an OTLP/HTTP receiver and a large-body upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchgear.proxy import keys
from switchgear.telemetry.otel import OtelTracing
from tests.proxy.conftest import Gateway, backends, gateway, upstream  # noqa: F401

__all__ = ["OTLPReceiver", "BigUpstream", "record_spans", "backends"]

TRACING_IN_MEMORY = {"tracing": {"enabled": True, "exporter": "none"}}


def record_spans(gw: Gateway) -> InMemorySpanExporter:
    """Every span the gateway finishes from now on, in memory."""
    tracing = gw.app[keys.TRACING]
    assert isinstance(tracing, OtelTracing)
    exporter = InMemorySpanExporter()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def by_kind(spans: tuple[ReadableSpan, ...], kind: str) -> list[ReadableSpan]:
    return [s for s in spans if s.kind.name == kind]


@dataclass
class OTLPReceiver:
    """An OTLP/HTTP traces endpoint on loopback that decodes each protobuf export."""

    exports: list[ExportTraceServiceRequest] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        self.exports.append(message)
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def spans(self) -> list[Any]:
        return [
            span
            for export in self.exports
            for resource_spans in export.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]


@pytest.fixture
async def otlp_receiver() -> AsyncIterator[OTLPReceiver]:
    receiver = OTLPReceiver()
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/traces"
    yield receiver
    await runner.cleanup()


class BigUpstream:
    """An OpenAI chat upstream that takes bodies up to 64 MiB and records their sizes.

    While ``hold`` is set, each request waits for ``release`` before it is answered.
    """

    def __init__(self, model: str = "vision") -> None:
        self.model = model
        self.sizes: list[int] = []
        self.images: list[int] = []
        self.hold = False
        self.release = asyncio.Event()
        self.waiting = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.sizes.append(len(raw))
        body = orjson.loads(raw)
        for message in body["messages"]:
            for part in message["content"] if isinstance(message["content"], list) else ():
                if part.get("type") == "image_url":
                    self.images.append(len(part["image_url"]["url"]))
        if self.hold:
            self.waiting += 1
            await self.release.wait()
        answer = {
            "id": "chatcmpl-big",
            "object": "chat.completion",
            "created": 0,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "a phone screen"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 3, "total_tokens": 1003},
        }
        return web.json_response(answer)

    async def start(self) -> BigUpstream:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"
        return self

    async def close(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def big_upstream() -> AsyncIterator[BigUpstream]:
    up = await BigUpstream().start()
    yield up
    await up.close()
