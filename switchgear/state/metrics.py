"""Prometheus series of the state backend, on the gateway's registry (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class StateMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry()
        self.up = Gauge(
            "switchgear_state_backend_up",
            "1 while the shared state backend (Redis) answers; 0 while this process runs on "
            "local state",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.consul_up = Gauge(
            "switchgear_state_consul_up",
            "1 while Consul answers the fleet state's calls (backend health and detector "
            "leadership with state.consul); 0 while this process applies health changes locally",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.errors = Counter(
            "switchgear_state_backend_errors",
            "Failed or timed-out calls to the state backend, by operation",
            ["op"],
            registry=r,
        )
        self.fallbacks = Counter(
            "switchgear_state_local_fallbacks",
            "Rate-limit checks answered from local buckets because the state backend was down",
            registry=r,
        )
        self.leader = Gauge(
            "switchgear_detector_leader",
            "1 while this process holds the fleet's detector leadership",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.health_events = Counter(
            "switchgear_state_health_events",
            "Backend health changes by direction (published, applied from another gateway)",
            ["direction"],
            registry=r,
        )
        self._errors: dict[str, Counter] = {}

    def error(self, op: str) -> None:
        child = self._errors.get(op)
        if child is None:
            child = self._errors[op] = self.errors.labels(op)
        child.inc()
