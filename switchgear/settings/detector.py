"""Settings of the anomaly detector and the action policy (owned by the detector part)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from switchgear.settings.base import Section

METRICS = (
    "latency_p50",
    "latency_p95",
    "ttft",
    "error_rate",
    "rps",
    "queue_depth",
    "memory_rss",
    "gpu_allocated",
    "gpu_reserved",
)


class EventSettings(Section):
    """Hysteresis: open after ``open_after`` ticks at or above ``open_score``, close after
    ``close_after`` ticks below ``close_score``."""

    open_score: float = Field(0.5, gt=0, le=1)
    close_score: float = Field(0.3, ge=0, le=1)
    open_after: int = Field(3, ge=1)
    close_after: int = Field(30, ge=1)
    keep_recent: int = Field(200, ge=1)

    @model_validator(mode="after")
    def _order(self) -> EventSettings:
        if self.close_score > self.open_score:
            raise ValueError("close_score must not exceed open_score")
        return self


class ScalingSettings(Section):
    """Requests/s forecast against capacity; bounds and cool-down of the scale hook."""

    enabled: bool = False
    rps_per_replica: float = Field(10.0, gt=0)
    horizon_s: float = Field(60.0, gt=0)
    idle_rps: float = Field(0.1, ge=0)
    idle_for_s: float = Field(600.0, gt=0)
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    cooldown_s: float = Field(120.0, ge=0)
    #: The forecast must ask for more replicas for this long before a scale-out: a burst
    #: that ends sooner is over before a new worker could serve (it loads for longer).
    sustain_s: float = Field(30.0, ge=0)


class OutlierSettings(Section):
    """Replicas of a model judged against each other and their own past (docs/detector.md)."""

    enabled: bool = True
    window_s: float = Field(10.0, gt=0)
    #: Requests in the window before a replica is judged; below it, probes top it up.
    min_samples: int = Field(4, ge=1)
    #: The newest requests (within the window) a replica is judged on.
    recent: int = Field(8, ge=1)
    latency_ratio: float = Field(2.0, gt=1)
    #: Peers are also compared at the same moments: for each of the replica's judged
    #: requests, the peers' requests that finished while it ran, or within ``align_s``
    #: before its start or after its end. A stall of the whole host slows every replica at
    #: once and is not one replica's fault, even when the balancer then starves the
    #: replica that stalled last. 0: the peers' newest requests only.
    align_s: float = Field(0.25, ge=0)
    self_ratio: float = Field(2.5, gt=1)
    #: The floor of the excess latency that counts: ``excess_mads`` x the median absolute
    #: deviation of the latencies compared with (the peers' newest, or the replica's
    #: reference), and never below ``min_excess_s`` (timer and scheduling noise).
    min_excess_s: float = Field(0.02, ge=0)
    excess_mads: float = Field(6.0, ge=0)
    #: Healthy samples of a replica before its own past is used as a reference.
    reference_samples: int = Field(50, ge=1)
    #: Failing: at least ``min_errors`` of its newest ``error_samples`` requests failed,
    #: and they are at least ``error_rate`` of them.
    error_rate: float = Field(0.1, gt=0, le=1)
    min_errors: int = Field(2, ge=1)
    error_samples: int = Field(20, ge=1)
    #: While the model's offered load (arrivals/s) of the last 3 s is at least
    #: ``load_rise`` x its median over the minute before (or its last 10 s x the lowest
    #: 10 s of the 2 min before), slow replicas are load: no latency ejection and no
    #: fallback (the smaller fallback model would not serve it better); scaling answers it.
    load_rise: float = Field(1.5, gt=1)
    consecutive: int = Field(3, ge=1)
    #: Slow checks in a row must also add up this much excess latency (median - peers' or
    #: usual median, summed over the checks), or ``evidence_medians`` x that median,
    #: whichever comes first: small excesses need more checks.
    excess_evidence_s: float = Field(0.6, ge=0)
    evidence_medians: float = Field(8.0, ge=0)
    max_ejection_percent: float = Field(50.0, ge=0, le=100)
    probe_interval_s: float = Field(1.0, gt=0)
    #: Probes sent back to back per ``probe_interval_s`` to a probed replica with a failure
    #: in its window, or admitted and slower than its peers (one otherwise): 20% errors is
    #: then judged on ~30 probes in 10 s, a fresh slowdown on enough requests soon.
    suspect_probes: int = Field(3, ge=1)
    probe_timeout_s: float = Field(5.0, gt=0)


class LeakSettings(Section):
    """A backend whose RSS grows for ``window_s`` at ``min_mb_per_s`` or more (Theil-Sen slope
    over the window and each third of it) is restarted; at most once per ``cooldown_s``."""

    enabled: bool = True
    metric: str = "memory_rss"
    window_s: float = Field(60.0, gt=0)
    min_mb_per_s: float = Field(1.0, gt=0)
    cooldown_s: float = Field(300.0, ge=0)


class PolicySettings(Section):
    #: Metrics whose hysteresis events eject a backend. Empty by default: replicas are
    #: ejected by the outlier rule (``outliers``); the events are shown, not acted on.
    eject_metrics: list[str] = Field(default_factory=list)
    #: Metrics whose hysteresis events restart a backend. Empty by default: the leak rule
    #: (``leak``) restarts on sustained growth only, never on a step.
    memory_metrics: list[str] = Field(default_factory=list)
    leak: LeakSettings = Field(default_factory=LeakSettings)
    outliers: OutlierSettings = Field(default_factory=OutlierSettings)
    probe_interval_s: float = Field(10.0, gt=0)
    #: A probe (GET ``/health``, then the backend's ``/models``) slower than this fails, so a
    #: backend that is still slow stays ejected.
    probe_timeout_s: float = Field(2.0, gt=0)
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)


class ScalerSettings(Section):
    """The built-in local scaler: ``switchgear worker`` processes from a worker config.

    ``worker_configs`` maps a model name (or ``"*"``) to a worker YAML file; each process runs
    it with ``--name MODEL --port PORT`` on a free port of ``host``. Unset = no local scaling.
    """

    worker_configs: dict[str, str] = Field(default_factory=dict)
    host: str = "127.0.0.1"
    ready_timeout_s: float = Field(120.0, gt=0)
    stop_timeout_s: float = Field(10.0, gt=0)


class DetectorSettings(Section):
    """Which detectors run on which metric, at what resolution, and how events open.

    ``detectors`` maps a metric name (or ``"*"``) to a detector name registered through the
    ``register_detectors`` hook; ``params`` passes keyword arguments to a detector factory,
    and ``params["<name>@<metric>"]`` overrides them for one metric.
    """

    enabled: bool = False
    resolution_s: float = Field(1.0, gt=0)
    history: int = Field(3600, ge=10)
    detectors: dict[str, str] = Field(default_factory=lambda: {"*": "baseline"})
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    scrape_interval_s: float = Field(5.0, gt=0)
    scrape_timeout_s: float = Field(2.0, gt=0)
    #: At most this many ``/metrics`` requests in flight at once.
    scrape_concurrency: int = Field(16, ge=1)
    #: Bound of one ``on_anomaly`` or ``scale`` call (a scale-out waits for a worker to load).
    action_timeout_s: float = Field(180.0, gt=0)
    #: A crashed background task of the detector restarts after this, doubling to 30 s.
    restart_backoff_s: float = Field(0.5, gt=0)
    max_fit_workers: int = Field(1, ge=1)
    #: Admin key of the switchgear workers (``POST /admin/restart``), when they have one.
    worker_admin_key: str | None = None
    #: Alerts (actions the gateway cannot take, e.g. restarting a vLLM server) are POSTed
    #: here as JSON when set.
    alert_webhook: str | None = None
    events: EventSettings = Field(default_factory=EventSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    scaler: ScalerSettings = Field(default_factory=ScalerSettings)

    def detector_for(self, metric: str) -> str:
        return self.detectors.get(metric, self.detectors.get("*", "baseline"))

    def params_for(self, name: str, metric: str) -> dict[str, Any]:
        """``params[name]`` updated by ``params["name@metric"]`` (per-metric parameters)."""
        return {**self.params.get(name, {}), **self.params.get(f"{name}@{metric}", {})}
