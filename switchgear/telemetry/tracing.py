"""The tracing facade: what the request path calls, whether tracing is on or off.

With tracing off the app holds a plain :class:`Tracing` (``enabled`` false): the
middleware skips it and :func:`attempt_span` / :func:`event` find no trace and return at
once. With it on, :class:`~switchgear.telemetry.otel.OtelTracing` starts one
:class:`RequestTrace` (the server span) per request.

The trace of the request being handled is found through a :class:`~contextvars.ContextVar`
that the middleware sets for the handler: upstream attempts, retries, fallbacks and
continuations happen deep in the request path, in the handler's task, and reach the trace
without every layer passing it along. A task started from the handler (a shadow request)
inherits it, so its spans land in the same trace.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from switchgear.settings.telemetry import TracingSettings
from switchgear.types import Backend, Endpoint, RequestContext

AttributeValue = str | int | float | bool

#: GenAI semantic conventions' ``gen_ai.operation.name`` of each proxied endpoint.
OPERATIONS: Mapping[Endpoint, str] = {
    "chat.completions": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}


@dataclass(frozen=True, slots=True)
class RequestSummary:
    """What the server span learns once the request is answered."""

    status: int
    endpoint: Endpoint | None = None
    requested_model: str | None = None
    response_model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error_type: str | None = None


class AttemptSpan(Protocol):
    """The client span of one upstream attempt; ended exactly once."""

    def inject(self, headers: Mapping[str, str]) -> dict[str, str]:
        """``headers`` plus this span's W3C ``traceparent`` (and ``tracestate``)."""

    def first_token(self) -> None:
        """Note the first token's arrival (an event)."""

    def end(self, status: int, *, output_tokens: int = 0, error: str | None = None) -> None:
        """End the span with the attempt's status, tokens and failure reason."""


class RequestTrace(Protocol):
    """The server span of one client request."""

    def attempt(self, backend: Backend, ctx: RequestContext) -> AttemptSpan:
        """A client span, child of this one, for one call to ``backend``."""

    def event(self, name: str, attributes: Mapping[str, AttributeValue]) -> None:
        """Add an event (retry, fallback, continuation) to the server span."""

    def finish(self, summary: RequestSummary) -> None:
        """Set the answer's attributes and end the server span."""


class Tracing:
    """Tracing switched off: records nothing and costs one attribute check per request."""

    enabled = False

    def start_request(
        self, method: str, path: str, headers: Mapping[str, str], host: str | None, request_id: str
    ) -> RequestTrace:
        raise RuntimeError("tracing is disabled")

    def force_flush(self) -> bool:
        """Export every finished span now (blocking: call it off the event loop)."""
        return True

    def shutdown(self) -> None:
        """Flush and stop the exporter (blocking: call it off the event loop)."""


_CURRENT: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar(
    "switchgear_request_trace", default=None
)


def activate(trace: RequestTrace) -> contextvars.Token[RequestTrace | None]:
    """Make ``trace`` the current request's trace, until :func:`deactivate`."""
    return _CURRENT.set(trace)


def deactivate(token: contextvars.Token[RequestTrace | None]) -> None:
    _CURRENT.reset(token)


def attempt_span(backend: Backend, ctx: RequestContext) -> AttemptSpan | None:
    """A client span for a call to ``backend``, or None when the request is not traced."""
    trace = _CURRENT.get()
    return trace.attempt(backend, ctx) if trace is not None else None


def event(name: str, attributes: Mapping[str, AttributeValue]) -> None:
    """Add an event to the current request's server span, when there is one."""
    trace = _CURRENT.get()
    if trace is not None:
        trace.event(name, attributes)


def make_tracing(settings: TracingSettings) -> Tracing:
    """The app's tracing: OpenTelemetry when ``settings.enabled``, else the no-op."""
    if not settings.enabled:
        return Tracing()
    from switchgear.telemetry.otel import OtelTracing  # needs the otel extra

    return OtelTracing(settings)
