"""Tracing with the OpenTelemetry SDK, exported as OTLP over HTTP (the ``otel`` extra).

Spans follow the GenAI semantic conventions: the server span of a request and the client
span of each upstream attempt are named ``{gen_ai.operation.name} {gen_ai.request.model}``
and carry ``gen_ai.*``, ``server.*``, ``http.response.status_code`` and, on failure,
``error.type``. Retries, fallbacks and continuations are events of the server span.

Resource rules: each app owns one :class:`~opentelemetry.sdk.trace.TracerProvider` (no
global provider is set, so two apps in one process keep their spans apart). Finished spans
are queued by a ``BatchSpanProcessor`` and exported from its own thread, never on the event
loop; :meth:`OtelTracing.shutdown`, called off the loop by the app's cleanup context,
flushes them. The W3C trace context propagator is used directly, not through globals.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from switchgear.settings.telemetry import TracingSettings
from switchgear.telemetry.tracing import (
    OPERATIONS,
    AttemptSpan,
    AttributeValue,
    RequestSummary,
    RequestTrace,
    Tracing,
)
from switchgear.types import Backend, RequestContext

PROVIDER = "switchgear"  # gen_ai.provider.name of the gateway's own (server) spans


def _address(url: str) -> tuple[str | None, int | None]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname, port


class OtelTracing(Tracing):
    enabled = True

    def __init__(self, settings: TracingSettings) -> None:
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        )
        if settings.exporter == "otlp":
            exporter = OTLPSpanExporter(
                endpoint=settings.endpoint,
                headers=dict(settings.headers),
                timeout=settings.export_timeout,
            )
            self.provider.add_span_processor(
                BatchSpanProcessor(exporter, schedule_delay_millis=settings.export_delay_ms)
            )
        self.tracer = self.provider.get_tracer("switchgear")
        self.propagator = TraceContextTextMapPropagator()

    def add_span_processor(self, processor: SpanProcessor) -> None:
        self.provider.add_span_processor(processor)

    def start_request(
        self, method: str, path: str, headers: Mapping[str, str], host: str | None, request_id: str
    ) -> RequestTrace:
        parent = self.propagator.extract(headers)
        address, port = _address(f"http://{host}") if host else (None, None)
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method,
            "url.path": path,
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.system": PROVIDER,
            "switchgear.request_id": request_id,
        }
        if address is not None and port is not None:
            attributes["server.address"], attributes["server.port"] = address, port
        span = self.tracer.start_span(
            f"{method} {path}", context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        return _ServerTrace(self, span)

    def force_flush(self) -> bool:
        return self.provider.force_flush()

    def shutdown(self) -> None:
        self.provider.shutdown()


class _ServerTrace:
    __slots__ = ("tracing", "span")

    def __init__(self, tracing: OtelTracing, span: Span) -> None:
        self.tracing, self.span = tracing, span

    def attempt(self, backend: Backend, ctx: RequestContext) -> AttemptSpan:
        operation = OPERATIONS.get(ctx.endpoint, ctx.endpoint)
        address, port = _address(backend.url)
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": backend.protocol,
            "gen_ai.system": backend.protocol,
            "gen_ai.request.model": ctx.model,
            "switchgear.backend.id": backend.id,
            "switchgear.backend.datacenter": backend.datacenter,
        }
        if address is not None and port is not None:
            attributes["server.address"], attributes["server.port"] = address, port
        if ctx.request is not None and ctx.request.max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = ctx.request.max_tokens
        span = self.tracing.tracer.start_span(
            f"{operation} {ctx.model}",
            context=trace_api.set_span_in_context(self.span),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        return _ClientSpan(self.tracing, span, ctx.model)

    def event(self, name: str, attributes: Mapping[str, AttributeValue]) -> None:
        self.span.add_event(name, dict(attributes))

    def finish(self, s: RequestSummary) -> None:
        span = self.span
        if s.endpoint is not None:
            operation = OPERATIONS[s.endpoint]
            span.set_attribute("gen_ai.operation.name", operation)
            if s.requested_model:
                span.set_attribute("gen_ai.request.model", s.requested_model)
                span.update_name(f"{operation} {s.requested_model}")
        if s.response_model is not None:
            span.set_attribute("gen_ai.response.model", s.response_model)
        if s.input_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", s.input_tokens)
        if s.output_tokens is not None:
            span.set_attribute("gen_ai.usage.output_tokens", s.output_tokens)
        span.set_attribute("http.response.status_code", s.status)
        if s.status >= 500 or s.error_type is not None:
            span.set_attribute("error.type", s.error_type or str(s.status))
            span.set_status(Status(StatusCode.ERROR))
        span.end()


class _ClientSpan:
    __slots__ = ("tracing", "span", "model")

    def __init__(self, tracing: OtelTracing, span: Span, model: str) -> None:
        self.tracing, self.span, self.model = tracing, span, model

    def inject(self, headers: Mapping[str, str]) -> dict[str, str]:
        out = dict(headers)
        self.tracing.propagator.inject(out, context=trace_api.set_span_in_context(self.span))
        return out

    def first_token(self) -> None:
        self.span.add_event("gen_ai.first_token")

    def end(self, status: int, *, output_tokens: int = 0, error: str | None = None) -> None:
        span = self.span
        span.set_attribute("http.response.status_code", status)
        if output_tokens:
            span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
        if error is None:
            span.set_attribute("gen_ai.response.model", self.model)
        else:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()
