"""Settings of Consul discovery and registration (owned by the discovery part)."""

from __future__ import annotations

from pydantic import Field

from switchgear.settings.base import Section


class ConsulSettings(Section):
    """Where the local Consul agent is and what to watch or register.

    ``token`` may be ``${CONSUL_HTTP_TOKEN}``; it is sent as ``X-Consul-Token``.
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8500, ge=1, le=65535)
    scheme: str = "http"
    token: str | None = None
    datacenter: str | None = None
    service: str = "switchgear-model"
    wait: str = "30s"
    kv_prefix: str | None = "switchgear/"
