"""Prometheus metrics of one worker app (own registry per app, no global state).

Memory is read at scrape time: process RSS always, and on CUDA allocated, reserved and peak
bytes per device.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from switchgear.worker.loading import memory_snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _MemoryCollector:
    def collect(self) -> Any:
        snap = memory_snapshot()
        rss = GaugeMetricFamily("switchgear_worker_rss_bytes", "Resident set size of the process")
        rss.add_metric([], snap.pop("rss_bytes"))
        yield rss
        cuda = GaugeMetricFamily(
            "switchgear_worker_cuda_memory_bytes",
            "CUDA memory per device",
            labels=["device", "kind"],
        )
        for key, value in snap.items():
            dev, kind, _ = key.split("_", 2)
            cuda.add_metric([dev, kind], value)
        yield cuda


class WorkerMetrics:
    """Queue depth, batch size, tokens/s, time to first token, requests, swaps, memory."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.queue_depth = Gauge(
            "switchgear_worker_queue_depth", "Requests waiting for a batch", registry=r
        )
        self.batch_size = Histogram(
            "switchgear_worker_batch_size",
            "Requests per generation batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.batch_size_max = Gauge(
            "switchgear_worker_batch_size_max", "Largest batch so far", registry=r
        )
        self.tokens = Counter("switchgear_worker_generated_tokens", "Generated tokens", registry=r)
        self.tokens_per_second = Gauge(
            "switchgear_worker_tokens_per_second",
            "Generation throughput of the last batch",
            registry=r,
        )
        self.ttft = Histogram(
            "switchgear_worker_time_to_first_token_seconds",
            "Time to first token",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.cancelled = Counter(
            "switchgear_worker_cancelled_requests",
            "Generations stopped because the client went away",
            registry=r,
        )
        self.requests = Counter(
            "switchgear_worker_requests",
            "Requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.swaps = Counter(
            "switchgear_worker_swaps", "Hot swaps by result", ["result"], registry=r
        )
        self.model_info = Gauge(
            "switchgear_worker_model_info",
            "The model being served",
            ["model", "quantization", "dtype", "device"],
            registry=r,
        )
        self.load_seconds = Gauge(
            "switchgear_worker_model_load_seconds", "Load time of the model", registry=r
        )
        r.register(_MemoryCollector())
        self._max = 0

    def set_queue_depth(self, n: int) -> None:
        self.queue_depth.set(n)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)
        if size > self._max:
            self._max = size
            self.batch_size_max.set(size)

    def observe_ttft(self, seconds: float) -> None:
        self.ttft.observe(seconds)

    def add_tokens(self, n: int, seconds: float) -> None:
        self.tokens.inc(n)
        if seconds > 0:
            self.tokens_per_second.set(n / seconds)

    def observe_cancel(self) -> None:
        self.cancelled.inc()

    def set_model(self, bundle: Any) -> None:
        self.model_info.clear()
        self.model_info.labels(
            bundle.name, bundle.quantization or "none", bundle.dtype, bundle.device
        ).set(time.time())
        self.load_seconds.set(bundle.load_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
