"""Settings of the gateway: listener, auth, static backends, models, deadlines, retries."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator, model_validator

from switchgear.settings.base import Section, read_secret_file
from switchgear.settings.state import StateSettings
from switchgear.settings.telemetry import TracingSettings
from switchgear.urls import check_health_path, parse_pattern


class Listen(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    tls_cert: str | None = None
    tls_key: str | None = None


class Auth(Section):
    """API keys for /v1 and a separate admin key for /admin.

    Keys come from here, from ``SWITCHGEAR_API_KEYS`` (comma-separated) and
    ``SWITCHGEAR_ADMIN_KEY``, or from files (one key per line). No keys = open /v1.
    """

    api_keys: list[str] = Field(default_factory=list)
    api_keys_file: str | None = None
    admin_key: str | None = None
    admin_key_file: str | None = None
    admin_localhost_only: bool = False
    #: /dashboard answers loopback clients without the admin key. Off by default: behind a
    #: reverse proxy on the same host every request comes from loopback, so this opens the
    #: dashboard (backend URLs and state) to everyone that proxy serves.
    dashboard_localhost: bool = False

    def resolved_api_keys(self) -> list[str]:
        keys = list(self.api_keys)
        env = os.environ.get("SWITCHGEAR_API_KEYS")
        if env:
            keys += [k.strip() for k in env.split(",") if k.strip()]
        if self.api_keys_file:
            with open(self.api_keys_file, encoding="utf-8") as fh:
                keys += [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]
        return keys

    def resolved_admin_key(self) -> str | None:
        if self.admin_key:
            return self.admin_key
        if os.environ.get("SWITCHGEAR_ADMIN_KEY"):
            return os.environ["SWITCHGEAR_ADMIN_KEY"]
        if self.admin_key_file:
            return read_secret_file(self.admin_key_file)
        return None


class Timeouts(Section):
    """Deadlines in seconds. ``ttft`` bounds the wait for the first byte of one attempt
    (for a non-streaming request: the whole answer); a stream's first chunk is awaited at
    most ``min(ttft, stream_ttft)``. ``request`` (streams) and ``request_json``
    (non-streaming) bound the wait for the first byte across all retries and fallback
    models, of which a model with fallbacks after it uses at most ``model_share`` (see
    :mod:`switchgear.proxy.budget`)."""

    connect: float = Field(default=5.0, gt=0)
    ttft: float = Field(default=60.0, gt=0)
    idle: float = Field(default=60.0, gt=0)
    total: float = Field(default=600.0, gt=0)
    stream_ttft: float = Field(default=15.0, gt=0)
    request: float = Field(default=60.0, gt=0)
    request_json: float = Field(default=240.0, gt=0)
    model_share: float = Field(default=0.5, gt=0, le=1)


class Retries(Section):
    attempts: int = Field(default=3, ge=1, le=20)
    backoff_base: float = Field(default=0.05, ge=0)
    backoff_max: float = Field(default=2.0, ge=0)
    retry_after_cap: float = Field(default=5.0, ge=0)


class Breaker(Section):
    failures: int = Field(default=5, ge=1)
    cooldown: float = Field(default=25.0, gt=0, le=300)


class StaticBackend(Section):
    model: str
    url: str
    id: str | None = None
    datacenter: str = "local"
    weight: float = Field(default=1.0, gt=0)
    api_key: str | None = None
    protocol: str = "openai"
    #: Service metadata, as Consul's ``Service.Meta`` carries it (``context_length``,
    #: ``languages``, ``prompt_format``...): the model catalogue reads it the same way.
    meta: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class ModelSettings(Section):
    """Per-model metadata and behaviour; anything unset falls back to the gateway defaults."""

    context_length: int | None = Field(default=None, gt=0)
    languages: list[str] = Field(default_factory=list)
    fallback: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    cost: float = 1.0
    prompt_format: str | None = None
    supports_continuation: bool = False
    balancing: str | None = None
    timeouts: Timeouts | None = None
    retries: Retries | None = None


class Limits(Section):
    """``max_body_bytes``: larger request bodies get 413; the default fits a vision request
    with OpenAI's largest image (20 MB, about 27 MB as base64). ``max_body_bytes_in_flight``:
    the request bodies one gateway process holds at once (by ``Content-Length``, a chunked
    body counts as ``max_body_bytes``); a request past it gets 503 with ``Retry-After``.
    ``max_tokens_cap``: ``max_tokens`` / ``max_completion_tokens`` above it are lowered to
    it. ``upstream_connections``: size of the pooled upstream connection pool (per process).
    """

    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    max_body_bytes_in_flight: int = Field(default=256 * 1024 * 1024, gt=0)
    max_tokens_cap: int | None = Field(default=None, gt=0)
    upstream_connections: int = Field(default=1024, ge=1)

    @model_validator(mode="after")
    def _one_body_fits(self) -> Limits:
        if self.max_body_bytes_in_flight < self.max_body_bytes:
            raise ValueError("max_body_bytes_in_flight must be at least max_body_bytes")
        return self


class RateLimit(Section):
    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)


class RateLimits(RateLimit):
    """Per-key limits on /v1: every API key gets these, unless ``keys`` names it.

    ``keys`` is keyed by the key's id as logs and metrics show it: ``key-0`` for the first
    configured API key, ``key-1`` for the second... (never the secret itself). When no API
    keys are configured, each client address is limited instead (``ip:ADDRESS``). Unset
    limits are unlimited; 429 answers carry ``Retry-After``.
    """

    keys: dict[str, RateLimit] = Field(default_factory=dict)

    def for_key(self, key: str) -> RateLimit:
        return self.keys.get(key) or self

    def enabled(self) -> bool:
        return any(
            lim.requests_per_minute or lim.tokens_per_minute for lim in (self, *self.keys.values())
        )


class ExternalBackends(Section):
    """Which URLs ``POST /admin/backends`` may register in Consul.

    ``url_patterns`` are ``scheme://host[:port][/path]`` patterns, matched by
    :func:`switchgear.urls.check_backend_url`: the host is matched label by label
    after IP literals are normalised (``0x7f000001`` is ``127.0.0.1``), so ``http://10.*``
    matches ``10.0.0.5`` but never ``10.attacker.example``. Loopback, private, link-local and
    cloud metadata addresses are refused unless a pattern names them with a literal first
    label (``http://10.*``, ``http://127.0.0.1:*``, ``http://[::1]:*``); ``http://*`` never
    lets them through. A missing port or path in a pattern matches any. URLs carrying
    credentials (``user@host``) are always refused.
    """

    url_patterns: list[str] = Field(default_factory=lambda: ["http://*", "https://*"])

    @field_validator("url_patterns")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        for p in v:
            parse_pattern(p)
        return v


class EdgeLimits(Section):
    """Limits of the listening side, per gateway process (see docs/operations.md).

    ``max_connections``: open client connections; at the cap the longest-idle connection is
    closed to make room, and a new one is answered 503 only when none is idle.
    ``header_timeout``: a new connection must deliver its request headers within this.
    ``body_timeout``: the request body must arrive within this after the headers.
    ``keepalive_timeout``: an idle kept-alive connection is closed after this.
    """

    max_connections: int = Field(default=10000, ge=1)
    header_timeout: float = Field(default=10.0, gt=0)
    body_timeout: float = Field(default=60.0, gt=0)
    keepalive_timeout: float = Field(default=15.0, gt=0)


class HealthChecks(Section):
    """Active health checks of static backends: ``GET path`` on the backend's origin.

    A probe fails when no HTTP answer (or a 5xx) comes within ``timeout``; after
    ``unhealthy_threshold`` failures in a row the backend is taken out, after
    ``healthy_threshold`` passes in a row it is back. A failed probe is repeated at once,
    so a frozen backend is out within ``interval + unhealthy_threshold * timeout``.
    ``meta.health_path`` of a backend overrides ``path``.
    """

    enabled: bool = True
    interval: float = Field(default=5.0, gt=0)
    timeout: float = Field(default=2.0, gt=0)
    path: str = "/health"
    healthy_threshold: int = Field(default=2, ge=1)
    unhealthy_threshold: int = Field(default=2, ge=1)

    @field_validator("path")
    @classmethod
    def _a_path(cls, v: str) -> str:
        return check_health_path(v)

    @model_validator(mode="after")
    def _timeout_fits(self) -> HealthChecks:
        if self.timeout > self.interval:
            raise ValueError("timeout must not exceed interval")
        return self


class GatewaySection(Section):
    """Fields the gateway reads, mixed into the top-level :class:`~switchgear.settings.Settings`."""

    listen: Listen = Field(default_factory=lambda: Listen.model_validate({}))
    workers: int = Field(default=1, ge=1, le=64)
    auth: Auth = Field(default_factory=lambda: Auth.model_validate({}))
    limits: Limits = Field(default_factory=lambda: Limits.model_validate({}))
    rate_limits: RateLimits = Field(default_factory=lambda: RateLimits.model_validate({}))
    backends: list[StaticBackend] = Field(default_factory=list)
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    timeouts: Timeouts = Field(default_factory=lambda: Timeouts.model_validate({}))
    retries: Retries = Field(default_factory=lambda: Retries.model_validate({}))
    breaker: Breaker = Field(default_factory=lambda: Breaker.model_validate({}))
    balancing: Literal["p2c", "round_robin", "weighted", "latency"] = "p2c"
    external_backends: ExternalBackends = Field(
        default_factory=lambda: ExternalBackends.model_validate({})
    )
    access_log: bool = False
    shutdown_grace: float = Field(default=30.0, ge=0)
    state: StateSettings = Field(default_factory=lambda: StateSettings.model_validate({}))
    edge: EdgeLimits = Field(default_factory=lambda: EdgeLimits.model_validate({}))
    health_checks: HealthChecks = Field(default_factory=lambda: HealthChecks.model_validate({}))
    tracing: TracingSettings = Field(default_factory=lambda: TracingSettings.model_validate({}))

    @model_validator(mode="after")
    def _fallbacks_known(self) -> GatewaySection:
        for name, m in self.models.items():
            if name in m.fallback:
                raise ValueError(f"models.{name}.fallback must not contain the model itself")
        return self
