"""Prometheus metrics of one gateway app, on its own CollectorRegistry (no process globals).

In one process a request's updates add to plain numbers, turned into metric families only
when ``/metrics`` is scraped (:mod:`switchgear.proxy.tallies`): the same names, types,
labels and values as prometheus_client's own metrics, at a fraction of their cost per update.

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
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from switchgear.proxy.tallies import Family, Level, Tallies
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


#: The gateway's labelled series: kind, name, help, labels, buckets.
FAMILIES: tuple[tuple[str, str, str, tuple[str, ...], tuple[float, ...]], ...] = (
    (
        "counter",
        "switchgear_requests",
        "Client requests by answering model, backend, its datacenter and status",
        ("model", "backend", "datacenter", "status"),
        (),
    ),
    (
        "histogram",
        "switchgear_request_duration_seconds",
        "Client request duration (to the last byte)",
        ("model",),
        LATENCY_BUCKETS,
    ),
    (
        "histogram",
        "switchgear_time_to_first_token_seconds",
        "Upstream time to the first token (streams)",
        ("model", "backend"),
        LATENCY_BUCKETS,
    ),
    (
        "histogram",
        "switchgear_time_per_output_token_seconds",
        "Time per output token after the first (streams of two or more tokens)",
        ("model", "backend"),
        TPOT_BUCKETS,
    ),
    (
        "counter",
        "switchgear_prompt_tokens",
        "Prompt tokens of answered requests, by model and API key id",
        ("model", "key"),
        (),
    ),
    (
        "counter",
        "switchgear_completion_tokens",
        "Completion tokens of answered requests, by model and API key id",
        ("model", "key"),
        (),
    ),
    (
        "histogram",
        "switchgear_upstream_duration_seconds",
        "Duration of one upstream attempt",
        ("model", "backend"),
        LATENCY_BUCKETS,
    ),
    # the in-flight gauge comes here (IN_FLIGHT)
    (
        "counter",
        "switchgear_upstream_errors",
        "Failed upstream attempts by reason",
        ("model", "backend", "reason"),
        (),
    ),
    ("counter", "switchgear_retries", "Upstream attempts beyond the first", ("model",), ()),
    (
        "counter",
        "switchgear_fallbacks",
        "Requests answered by a fallback model",
        ("model", "to"),
        (),
    ),
    (
        "counter",
        "switchgear_route_decisions",
        "Routing decisions (select_model) by requested name, chosen model and rule",
        ("alias", "model", "rule"),
        (),
    ),
)
IN_FLIGHT = ("switchgear_requests_in_flight", "Client requests in progress")
_IN_FLIGHT_AT = 7  # its place among the families in the exposition


class _Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class _Histogram(Protocol):
    def observe(self, amount: float) -> None: ...


class _Families(Protocol):
    def counter(self, labels: tuple[str, ...]) -> _Counter: ...

    def histogram(self, labels: tuple[str, ...]) -> _Histogram: ...


class _Shared:
    """A family as prometheus_client's own metric, whose series live in the multiprocess
    files; label children are cached so an update pays one dict lookup, not label checks."""

    __slots__ = ("metric", "children")

    def __init__(self, metric: Any) -> None:
        self.metric, self.children = metric, dict[tuple[str, ...], Any]()

    def counter(self, labels: tuple[str, ...]) -> _Counter:
        child = self.children.get(labels)
        if child is None:
            child = self.children[labels] = self.metric.labels(*labels)
        return child  # type: ignore[no-any-return]

    def histogram(self, labels: tuple[str, ...]) -> _Histogram:
        child = self.children.get(labels)
        if child is None:
            child = self.children[labels] = self.metric.labels(*labels)
        return child  # type: ignore[no-any-return]


class _SharedLevel:
    __slots__ = ("gauge",)

    def __init__(self, gauge: Gauge) -> None:
        self.gauge = gauge

    def inc(self) -> None:
        self.gauge.inc()

    def dec(self) -> None:
        self.gauge.dec()


def _shared(registry: CollectorRegistry) -> tuple[list[_Shared], _SharedLevel]:
    kinds: dict[str, Any] = {"counter": Counter, "histogram": Histogram}
    out: list[_Shared] = []
    for kind, name, doc, labels, buckets in FAMILIES:
        if len(out) == _IN_FLIGHT_AT:
            gauge = Gauge(*IN_FLIGHT, registry=registry, multiprocess_mode="livesum")
        extra = {"buckets": buckets} if kind == "histogram" else {}
        out.append(_Shared(kinds[kind](name, doc, labels, registry=registry, **extra)))
    return out, _SharedLevel(gauge)


class Metrics:
    """The gateway's request metrics. In one process they are :mod:`~switchgear.proxy.
    tallies` (numbers on the hot path, metric families at scrape time); under
    :data:`MULTIPROC_ENV` they are prometheus_client's metrics, written to the shared files."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.in_flight: Level | _SharedLevel
        families: list[_Families]
        if os.environ.get(MULTIPROC_ENV):
            shared, self.in_flight = _shared(self.registry)
            families = list(shared)
        else:
            tallies = [Family(*spec) for spec in FAMILIES]
            self.in_flight = Level(*IN_FLIGHT)
            parts: list[Family | Level] = list(tallies)
            parts.insert(_IN_FLIGHT_AT, self.in_flight)
            self.registry.register(Tallies(parts))
            families = list(tallies)
        (
            self._requests,
            self._latency,
            self._ttft,
            self._tpot,
            self._prompt_tokens,
            self._completion_tokens,
            self._upstream_latency,
            self._upstream_errors,
            self._retries,
            self._fallbacks,
            self._route_decisions,
        ) = families

    def request_done(
        self, model: str, backend: str, datacenter: str, status: int, duration_s: float
    ) -> None:
        self._requests.counter((model, backend, datacenter, str(status))).inc()
        self._latency.histogram((model,)).observe(duration_s)

    def observe(self, obs: Observation) -> None:
        series = (obs.model, obs.backend_id)
        self._upstream_latency.histogram(series).observe(obs.latency_s)
        if obs.ttft_s is not None:
            self._ttft.histogram(series).observe(obs.ttft_s)
            if obs.error is None and obs.completion_tokens > 1:
                per_token = (obs.latency_s - obs.ttft_s) / (obs.completion_tokens - 1)
                self._tpot.histogram(series).observe(per_token)
        if obs.error is not None:
            self._upstream_errors.counter((*series, obs.error)).inc()

    def tokens(self, model: str, key: str, usage: Usage) -> None:
        if usage.prompt_tokens:
            self._prompt_tokens.counter((model, key)).inc(usage.prompt_tokens)
        if usage.completion_tokens:
            self._completion_tokens.counter((model, key)).inc(usage.completion_tokens)

    def route_decision(self, alias: str, model: str, rule: str) -> None:
        """``rule`` loses its numbers (the router's ``context:<tokens>``) to bound cardinality;
        the caller bounds ``alias`` (a routing alias or a known model, else ``other``)."""
        self._route_decisions.counter((alias, model, _NUMBER.sub("", rule))).inc()

    def retry(self, model: str) -> None:
        self._retries.counter((model,)).inc()

    def fallback(self, model: str, to: str) -> None:
        self._fallbacks.counter((model, to)).inc()

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
