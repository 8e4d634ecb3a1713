"""OpenTelemetry tracing of the gateway (``tracing:`` settings), off by default.

:func:`make_tracing` gives the app its :class:`Tracing`; the request path reaches the trace
of the request it runs for through :func:`attempt_span` and :func:`event`. Nothing here
imports OpenTelemetry unless tracing is enabled (:mod:`switchgear.telemetry.otel`), so the
gateway runs without the ``otel`` extra.
"""

from switchgear.telemetry.tracing import (
    AttemptSpan,
    RequestSummary,
    RequestTrace,
    Tracing,
    activate,
    attempt_span,
    deactivate,
    event,
    make_tracing,
)

__all__ = [
    "AttemptSpan",
    "RequestSummary",
    "RequestTrace",
    "Tracing",
    "activate",
    "attempt_span",
    "deactivate",
    "event",
    "make_tracing",
]
