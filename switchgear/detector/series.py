"""Fixed-resolution series per (backend, model, metric), fed by observations and scrapes.

The gateway's :class:`~switchgear.types.Observation` stream is bucketed per tick into
latency p50/p95, time to first token (p50), error rate and requests/s per backend and
model; gauges scraped from a backend's Prometheus ``/metrics`` (queue depth, memory RSS,
GPU allocated/reserved) keep their last value. :meth:`SeriesStore.tick` closes a bucket
and appends one value per series to its ring buffer; a series with no traffic in a tick
gets rps 0 and error rate 0 and repeats its last latency, so every series stays at the
fixed resolution.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from switchgear.detector.events import SeriesKey
from switchgear.types import Observation

# Prometheus metric name -> our metric name, for the switchgear worker, vLLM and TGI.
METRIC_NAMES: dict[str, str] = {
    # switchgear worker (switchgear/worker/metrics.py)
    "switchgear_worker_queue_depth": "queue_depth",
    "switchgear_worker_rss_bytes": "memory_rss",
    "process_resident_memory_bytes": "memory_rss",
    # vLLM
    "vllm:num_requests_waiting": "queue_depth",
    "vllm:gpu_cache_usage_perc": "gpu_cache_usage",
    "vllm:num_requests_running": "running",
    # Hugging Face text-generation-inference
    "tgi_queue_size": "queue_depth",
    "tgi_batch_current_size": "running",
}

# Metrics whose label picks our name: (Prometheus name, label) -> label value -> our name.
# The worker exports CUDA memory as one family, ``kind`` = allocated | reserved | peak, per
# ``device``; devices are summed.
LABELLED_NAMES: dict[tuple[str, str], dict[str, str]] = {
    ("switchgear_worker_cuda_memory_bytes", "kind"): {
        "allocated": "gpu_allocated",
        "reserved": "gpu_reserved",
    },
}
_LABELLED_BY_NAME = {name: (label, table) for (name, label), table in LABELLED_NAMES.items()}

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample of Prometheus text exposition."""

    name: str
    labels: dict[str, str]
    value: float


def parse_prometheus(text: str) -> list[Sample]:
    """Samples of Prometheus text format; comments, blank and malformed lines are skipped."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        out.append(Sample(m.group(1), labels, value))
    return out


def map_samples(samples: Iterable[Sample]) -> dict[str, float]:
    """Our metric names for the samples we know (summed across label sets, e.g. GPUs)."""
    out: dict[str, float] = {}
    for s in samples:
        metric = METRIC_NAMES.get(s.name)
        if metric is None and s.name in _LABELLED_BY_NAME:
            label, table = _LABELLED_BY_NAME[s.name]
            metric = table.get(s.labels.get(label, ""))
        if metric is not None and math.isfinite(s.value):
            out[metric] = out.get(metric, 0.0) + s.value
    return out


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(slots=True)
class _Bucket:
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    errors: int = 0


class SeriesStore:
    """Ring buffers of ``history`` points per series at ``resolution_s``."""

    def __init__(self, resolution_s: float = 1.0, history: int = 3600) -> None:
        self.resolution_s = resolution_s
        self.history = history
        self.series: dict[SeriesKey, deque[float]] = {}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._gauges: dict[SeriesKey, float] = {}

    def add_observation(self, obs: Observation) -> None:
        b = self._buckets.setdefault((obs.backend_id, obs.model), _Bucket())
        b.latencies.append(obs.latency_s)
        if obs.ttft_s is not None:
            b.ttfts.append(obs.ttft_s)
        if obs.error is not None or obs.status >= 500:
            b.errors += 1

    def add_samples(self, backend_id: str, model: str | None, samples: Iterable[Sample]) -> None:
        for metric, value in map_samples(samples).items():
            self._gauges[SeriesKey(backend_id, model, metric)] = value

    def tick(self) -> dict[SeriesKey, float]:
        """Close the current bucket: one value per known series, appended to its buffer."""
        values: dict[SeriesKey, float] = dict(self._gauges)
        known: set[tuple[str, str]] = {
            (k.backend_id or "", k.model or "") for k in self.series if k.metric == "rps"
        }
        for backend_model in known | set(self._buckets):
            backend_id, model = backend_model
            b = self._buckets.get(backend_model, _Bucket())
            n = len(b.latencies)
            values[SeriesKey(backend_id, model, "rps")] = n / self.resolution_s
            values[SeriesKey(backend_id, model, "error_rate")] = b.errors / n if n else 0.0
            for metric, data, q in (
                ("latency_p50", b.latencies, 0.5),
                ("latency_p95", b.latencies, 0.95),
                ("ttft", b.ttfts, 0.5),
            ):
                key = SeriesKey(backend_id, model, metric)
                if data:
                    values[key] = _quantile(data, q)
                elif self.series.get(key):
                    values[key] = self.series[key][-1]
        self._buckets.clear()
        for k, v in values.items():
            self.series.setdefault(k, deque(maxlen=self.history)).append(v)
        return values

    def values(self, key: SeriesKey) -> list[float]:
        return list(self.series.get(key, ()))
