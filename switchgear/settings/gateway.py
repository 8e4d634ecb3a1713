"""Settings of the gateway: listener, auth, static backends, models, deadlines, retries."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator, model_validator

from switchgear.settings.base import Section, read_secret_file


class Listen(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
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
    """Deadlines in seconds. ``ttft`` bounds the wait for the first byte of the answer."""

    connect: float = Field(5.0, gt=0)
    ttft: float = Field(60.0, gt=0)
    idle: float = Field(60.0, gt=0)
    total: float = Field(600.0, gt=0)


class Retries(Section):
    attempts: int = Field(3, ge=1, le=20)
    backoff_base: float = Field(0.05, ge=0)
    backoff_max: float = Field(2.0, ge=0)
    retry_after_cap: float = Field(5.0, ge=0)


class Breaker(Section):
    failures: int = Field(5, ge=1)
    cooldown: float = Field(25.0, gt=0, le=300)


class StaticBackend(Section):
    model: str
    url: str
    id: str | None = None
    datacenter: str = "local"
    weight: float = Field(1.0, gt=0)
    api_key: str | None = None
    protocol: str = "openai"

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class ModelSettings(Section):
    """Per-model metadata and behaviour; anything unset falls back to the gateway defaults."""

    context_length: int | None = Field(None, gt=0)
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
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)
    max_tokens_cap: int | None = Field(None, gt=0)


class GatewaySection(Section):
    """Fields the gateway reads, mixed into the top-level :class:`~switchgear.settings.Settings`."""

    listen: Listen = Field(default_factory=Listen)
    workers: int = Field(1, ge=1, le=64)
    auth: Auth = Field(default_factory=Auth)
    limits: Limits = Field(default_factory=Limits)
    backends: list[StaticBackend] = Field(default_factory=list)
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retries: Retries = Field(default_factory=Retries)
    breaker: Breaker = Field(default_factory=Breaker)
    balancing: Literal["p2c", "round_robin", "weighted", "latency"] = "p2c"
    access_log: bool = False
    shutdown_grace: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _fallbacks_known(self) -> GatewaySection:
        for name, m in self.models.items():
            if name in m.fallback:
                raise ValueError(f"models.{name}.fallback must not contain the model itself")
        return self
