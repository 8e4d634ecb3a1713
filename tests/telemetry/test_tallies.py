"""The gateway's tallied metrics expose what prometheus_client's own metrics would, byte for
byte, given the same updates (only the ``_created`` timestamps differ by the moment each
series was made)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from switchgear.proxy.metrics import _IN_FLIGHT_AT, FAMILIES, IN_FLIGHT, Metrics
from switchgear.types import Observation, Usage

_CREATED = re.compile(rb"^(\S+_created(?:\{[^}]*\})?) (\S+)$", re.M)


def _reference() -> tuple[CollectorRegistry, list[Any], Gauge]:
    registry = CollectorRegistry(auto_describe=True)
    made: list[Any] = []
    gauge = None
    for kind, name, doc, labels, buckets in FAMILIES:
        if len(made) == _IN_FLIGHT_AT:
            gauge = Gauge(*IN_FLIGHT, registry=registry)
        if kind == "counter":
            made.append(Counter(name, doc, labels, registry=registry))
        else:
            made.append(Histogram(name, doc, labels, buckets=buckets, registry=registry))
    assert gauge is not None
    return registry, made, gauge


def _created(text: bytes) -> tuple[bytes, list[float]]:
    return _CREATED.sub(rb"\1 T", text), [float(m[2]) for m in _CREATED.finditer(text)]


def test_tallies_render_as_prometheus_client_metrics() -> None:
    t0 = time.time()
    metrics = Metrics()
    registry, ref, gauge = _reference()
    (requests, latency, ttft, tpot, prompt, completion, upstream, errors, retries, fb, route) = ref

    assert generate_latest(metrics.registry) == generate_latest(registry)  # before any request

    # durations on bucket bounds, between them, beyond the last, zero
    for i, d in enumerate([0.005, 0.0051, 0.25, 0.0, 301.0, 1.5, 0.1, 60.0, 59.99]):
        model, status = ("m1", 200) if i % 3 else ("m2", 503)
        metrics.request_done(model, "http://b1", "dc1", status, d)
        requests.labels(model, "http://b1", "dc1", str(status)).inc()
        latency.labels(model).observe(d)
    observations = [
        Observation("b1", "m1", "dc1", 200, 0.4, ttft_s=0.1, completion_tokens=7),
        Observation("b1", "m1", "dc1", 200, 0.2, ttft_s=0.05, completion_tokens=1),
        Observation("b2", "m1", "dc1", 502, 0.03, ttft_s=0.01, completion_tokens=3, error="x"),
        Observation("b2", "m2", "dc2", 504, 30.0, error="timeout"),
    ]
    for obs in observations:
        metrics.observe(obs)
        upstream.labels(obs.model, obs.backend_id).observe(obs.latency_s)
        if obs.ttft_s is not None:
            ttft.labels(obs.model, obs.backend_id).observe(obs.ttft_s)
            if obs.error is None and obs.completion_tokens > 1:
                per = (obs.latency_s - obs.ttft_s) / (obs.completion_tokens - 1)
                tpot.labels(obs.model, obs.backend_id).observe(per)
        if obs.error is not None:
            errors.labels(obs.model, obs.backend_id, obs.error).inc()
    for usage in [Usage(3, 5), Usage(0, 2), Usage(4, 0)]:
        metrics.tokens("m1", "key-0", usage)
        if usage.prompt_tokens:
            prompt.labels("m1", "key-0").inc(usage.prompt_tokens)
        if usage.completion_tokens:
            completion.labels("m1", "key-0").inc(usage.completion_tokens)
    metrics.retry("m1")
    retries.labels("m1").inc()
    metrics.fallback("m1", "m2")
    fb.labels("m1", "m2").inc()
    metrics.route_decision("auto", "m1", "context:4096")
    route.labels("auto", "m1", "context").inc()
    metrics.in_flight.inc()
    metrics.in_flight.inc()
    metrics.in_flight.dec()
    gauge.inc()

    got, got_created = _created(generate_latest(metrics.registry))
    want, want_created = _created(generate_latest(registry))
    assert got == want
    assert b'le="+Inf"' in got and b"switchgear_requests_in_flight 1.0" in got
    assert len(got_created) == len(want_created) > 10
    assert all(t0 <= c <= time.time() for c in got_created)


def test_counters_refuse_negative_amounts_as_prometheus_client_does() -> None:
    with pytest.raises(ValueError):
        Metrics().tokens("m1", "none", Usage(-1, 0))
    with pytest.raises(ValueError):
        Counter("c", "c", registry=None).inc(-1)
