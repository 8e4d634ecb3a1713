"""Settings of Consul discovery and registration (owned by the discovery part).

Durations are Go-style strings (``"500ms"``, ``"10s"``, ``"1m"``) because they go to Consul
as they are; :func:`seconds` converts them for our own timers.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from switchgear.settings.base import Section

_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")


def seconds(duration: str) -> float:
    """A Go duration string in seconds (``"1m30s"`` → 90.0)."""
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(duration))


def _check_duration(value: str) -> str:
    if not _DURATION.match(value):
        raise ValueError(f"{value!r} is not a duration such as '500ms', '10s' or '1m'")
    return value


class ConsulCheckSettings(Section):
    """The HTTP health check Consul runs against a registered backend."""

    path: str = "/health"
    interval: str = "2s"
    timeout: str = "1s"
    # Consul enforces a 1 minute minimum and reaps every 30 s.
    deregister_critical_service_after: str = "1m"

    _durations = field_validator("interval", "timeout", "deregister_critical_service_after")(
        _check_duration
    )


class ConsulSettings(Section):
    """Where the local Consul agent is and what to watch or register.

    ``token`` may be ``${CONSUL_HTTP_TOKEN}``; it is sent as ``X-Consul-Token``.
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8500, ge=1, le=65535)
    scheme: str = "http"
    token: str | None = None
    datacenter: str | None = None  # the gateway's own DC; default: the agent's (/v1/agent/self)
    service: str = "switchgear-model"
    wait: str = "30s"  # blocking-query wait; the client timeout is wait × 17/16 + 5 s
    kv_prefix: str | None = "switchgear/"
    kv_models_key: str = (
        "models"  # under kv_prefix: JSON {model: {fallback: [...], aliases: [...]}}
    )

    # --- discovery ---
    datacenters: list[str] | None = None  # watch only these (default: every DC Consul lists)
    datacenter_refresh: str = "30s"  # /v1/catalog/datacenters cannot block; re-read this often
    backoff_initial: float = Field(default=0.5, gt=0)
    backoff_max: float = Field(default=15.0, gt=0)
    watch_burst: int = Field(default=5, ge=1)  # token bucket of each watch (contract §3.3)
    watch_rate: float = Field(default=1.0, gt=0)  # tokens per second once the burst is spent

    # --- registration (worker and external backends) ---
    service_id: str | None = None  # default: <service>-<host>-<port>
    address: str | None = None  # advertised address (default: the bind address, or the node's)
    tags: list[str] = Field(default_factory=list)
    meta: dict[str, str] = Field(default_factory=dict)  # extra Meta, e.g. {"team": "search"}
    cloud: str | None = None  # → Meta cloud
    region: str | None = None  # → Meta region
    check: ConsulCheckSettings = Field(default_factory=ConsulCheckSettings)
    resync_interval: str = "10s"  # how often a registration verifies the agent still knows it

    _durations = field_validator("wait", "datacenter_refresh", "resync_interval")(_check_duration)
