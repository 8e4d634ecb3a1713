"""Settings of the gateway's OpenTelemetry tracing (``tracing:``), off by default."""

from __future__ import annotations

import importlib
from typing import Literal

from pydantic import Field, model_validator

from switchgear.settings.base import Section

#: What ``pip install 'switchgear[otel]'`` provides; tracing needs both.
OTEL_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")


def otel_missing() -> str | None:
    """The first module of the ``otel`` extra that cannot be imported, or None."""
    for name in OTEL_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            return name
    return None


class TracingSettings(Section):
    """One server span per client request and one client span per upstream attempt.

    ``endpoint``: the OTLP/HTTP traces URL (protobuf payloads), ``headers`` sent with each
    export (e.g. an ingest token). ``sample_ratio``: the share of new traces recorded; a
    client's ``traceparent`` decides for its own trace. ``exporter: none`` records spans for
    in-process span processors only (plugins, tests) and exports nothing. Needs the ``otel``
    extra (``pip install 'switchgear[otel]'``) when ``enabled``.
    """

    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    service_name: str = Field(default="switchgear", min_length=1)
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    headers: dict[str, str] = Field(default_factory=dict)
    exporter: Literal["otlp", "none"] = "otlp"
    export_timeout: float = Field(default=10.0, gt=0)
    #: Longest wait before a batch of finished spans is exported (milliseconds).
    export_delay_ms: int = Field(default=5000, ge=1)

    @model_validator(mode="after")
    def _extra_installed(self) -> TracingSettings:
        if self.enabled and (missing := otel_missing()) is not None:
            raise ValueError(
                f"tracing is enabled but {missing} is not installed: "
                "install the otel extra (pip install 'switchgear[otel]') or set "
                "tracing.enabled: false"
            )
        if not self.endpoint.startswith(("http://", "https://")):
            raise ValueError("tracing.endpoint must start with http:// or https://")
        return self
