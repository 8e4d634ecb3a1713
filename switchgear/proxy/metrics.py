"""Prometheus metrics of one gateway app, on its own CollectorRegistry (no process globals).

Label children are cached in dicts so the hot path pays one dict lookup per update instead
of prometheus_client's label validation.

With ``--workers N`` every process writes its series to files in one directory
(prometheus_client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``, set by the parent
before it starts the workers: :func:`multiprocess_dir`), and ``/metrics`` answered by any
of them renders the sum over all processes: counters and histograms add up, the in-flight
gauge sums the live processes, ``switchgear_state_backend_up`` is the minimum of them.

Label values stay bounded: ``model`` is a configured or discovered model (a name the client
sent that is neither is ``other``; a request refused before its body was read is
``none``), ``key`` an API key's id (``key-0``...; never the key) or ``none`` without keys.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from switchgear.types import Observation, Usage

_NUMBER = re.compile(r":\d+")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1)
#: The ``model`` label of a request for a model name the gateway does not know.
OTHER = "other"
#: The ``model`` label of a request refused before its body was read, and the ``key``
#: label of requests without an API key.
NONE = "none"


def metric_key(key_id: str | None) -> str:
    return key_id if key_id is not None else NONE


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "switchgear_requests",
            "Client requests by answering model, backend, its datacenter and status",
            ["model", "backend", "datacenter", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "switchgear_request_duration_seconds",
            "Client request duration (to the last byte)",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "switchgear_time_to_first_token_seconds",
            "Upstream time to the first token (streams)",
            ["model", "backend"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "switchgear_time_per_output_token_seconds",
            "Time per output token after the first (streams of two or more tokens)",
            ["model", "backend"],
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "switchgear_prompt_tokens",
            "Prompt tokens of answered requests, by model and API key id",
            ["model", "key"],
            registry=r,
        )
        self.completion_tokens = Counter(
            "switchgear_completion_tokens",
            "Completion tokens of answered requests, by model and API key id",
            ["model", "key"],
            registry=r,
        )
        self.upstream_latency = Histogram(
            "switchgear_upstream_duration_seconds",
            "Duration of one upstream attempt",
            ["model", "backend"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "switchgear_requests_in_flight",
            "Client requests in progress",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.upstream_errors = Counter(
            "switchgear_upstream_errors",
            "Failed upstream attempts by reason",
            ["model", "backend", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "switchgear_retries", "Upstream attempts beyond the first", ["model"], registry=r
        )
        self.fallbacks = Counter(
            "switchgear_fallbacks",
            "Requests answered by a fallback model",
            ["model", "to"],
            registry=r,
        )
        self.route_decisions = Counter(
            "switchgear_route_decisions",
            "Routing decisions (select_model) by requested name, chosen model and rule",
            ["alias", "model", "rule"],
            registry=r,
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request_done(
        self, model: str, backend: str, datacenter: str, status: int, duration_s: float
    ) -> None:
        self._child(self.requests, model, backend, datacenter, str(status)).inc()
        self._child(self.latency, model).observe(duration_s)

    def observe(self, obs: Observation) -> None:
        self._child(self.upstream_latency, obs.model, obs.backend_id).observe(obs.latency_s)
        if obs.ttft_s is not None:
            self._child(self.ttft, obs.model, obs.backend_id).observe(obs.ttft_s)
            if obs.error is None and obs.completion_tokens > 1:
                per_token = (obs.latency_s - obs.ttft_s) / (obs.completion_tokens - 1)
                self._child(self.tpot, obs.model, obs.backend_id).observe(per_token)
        if obs.error is not None:
            self._child(self.upstream_errors, obs.model, obs.backend_id, obs.error).inc()

    def tokens(self, model: str, key: str, usage: Usage) -> None:
        if usage.prompt_tokens:
            self._child(self.prompt_tokens, model, key).inc(usage.prompt_tokens)
        if usage.completion_tokens:
            self._child(self.completion_tokens, model, key).inc(usage.completion_tokens)

    def route_decision(self, alias: str, model: str, rule: str) -> None:
        """``rule`` loses its numbers (the router's ``context:<tokens>``) to bound cardinality;
        the caller bounds ``alias`` (a routing alias or a known model, else ``other``)."""
        self._child(self.route_decisions, alias, model, _NUMBER.sub("", rule)).inc()

    def retry(self, model: str) -> None:
        self._child(self.retries, model).inc()

    def fallback(self, model: str, to: str) -> None:
        self._child(self.fallbacks, model, to).inc()

    def render(self) -> bytes:
        path = os.environ.get(MULTIPROC_ENV)
        if not path:
            return generate_latest(self.registry)
        fleet = CollectorRegistry()
        MultiProcessCollector(fleet, path=path)  # type: ignore[no-untyped-call]
        return generate_latest(fleet)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def multiprocess_dir() -> Iterator[str]:
    """A fresh directory for the workers' metric files, in the environment they inherit;
    removed afterwards. A directory the operator already set is used as it is, and kept."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        yield given
        return
    path = tempfile.mkdtemp(prefix="switchgear-metrics-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)
