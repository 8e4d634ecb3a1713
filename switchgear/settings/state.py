"""Where gateway state shared by a fleet lives: in this process (default), in Redis, and
(backend health, detector leadership) in Consul."""

from __future__ import annotations

from pydantic import Field, field_validator

from switchgear.settings.base import Section


class StateSettings(Section):
    """``redis_url`` unset: every process keeps its own state (rate limits, backend health,
    detector leadership), as a single gateway needs. Set: the processes and replicas that
    name the same Redis and ``key_prefix`` share them (docs/operations.md, "Running a fleet").

    ``timeout_s`` bounds every Redis call on the request path; past it the request uses the
    local fallback. ``leader_ttl_s`` is how long a dead detector leader keeps the lock.
    ``fleet_size`` is the number of gateway processes sharing a limit while Redis is down
    (each then allows ``limit / fleet_size``); unset, the processes last seen alive in Redis
    are counted, or ``workers`` before Redis was ever reached.

    ``consul: true`` (needs the ``consul`` section) sends backend health and the detector
    leadership through Consul instead of Redis: health entries in KV under the ``consul``
    section's ``kv_prefix`` (``<kv_prefix>fleet/<key_prefix>/``), watched with blocking
    queries, and the leader lock held by a Consul session. Rate limits and the detector's
    observations stay on Redis (``redis_url``), or in each process without it.
    """

    redis_url: str | None = None
    key_prefix: str = Field(default="switchgear", min_length=1)
    timeout_s: float = Field(default=0.25, gt=0, le=10)
    leader_ttl_s: float = Field(default=5.0, ge=0.5, le=300)
    fleet_size: int | None = Field(default=None, ge=1)
    consul: bool = False

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v
