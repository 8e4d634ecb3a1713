"""Hysteresis of events, Prometheus parsing and fixed-resolution series."""

from __future__ import annotations

from switchgear.detector.events import Hysteresis, SeriesKey
from switchgear.detector.series import SeriesStore, map_samples, parse_prometheus
from switchgear.types import Observation

KEY = SeriesKey("b1", "m", "latency_p95")


def test_event_opens_after_sustained_scores_and_closes_once() -> None:
    h = Hysteresis(open_score=0.5, close_score=0.3, open_after=3, close_after=4)
    scores = [0.9, 0.2, 0.9, 0.9, 0.6, 0.95, 0.4, 0.1, 0.1, 0.1, 0.4, 0.1, 0.1, 0.1, 0.1, 0.1]
    out = [(i, h.observe(KEY, s, float(i), {"baseline": s})) for i, s in enumerate(scores)]
    events = [(i, e) for i, e in out if e is not None]
    assert len(events) == 2
    (i_open, opened), (i_close, closed) = events
    assert i_open == 4 and opened.open and opened.started_at == 4.0
    assert opened.backend_id == "b1" and opened.model == "m" and opened.metric == "latency_p95"
    assert i_close == 14 and closed.ended_at == 14.0 and closed.id == opened.id
    assert closed.score == 0.95 and closed.contributions == {"baseline": 0.95}
    assert h.open_events() == [] and h.recent_events() == [closed]


PROM = """
# HELP vllm:num_requests_waiting Number of requests waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 7.0
tgi_queue_size 3
switchgear_worker_cuda_memory_bytes{device="cuda0",kind="allocated"} 100
switchgear_worker_cuda_memory_bytes{device="cuda1",kind="allocated"} 50
switchgear_worker_cuda_memory_bytes{device="cuda0",kind="peak"} 999
process_resident_memory_bytes 1.5e9
http_requests_total{path="/a b",code="200"} 12 1700000000000
broken line here
nan_metric NaN
"""


def test_parse_prometheus_text_and_map_names() -> None:
    samples = parse_prometheus(PROM)
    names = [s.name for s in samples]
    assert "vllm:num_requests_waiting" in names and "broken" not in names
    http = next(s for s in samples if s.name == "http_requests_total")
    assert http.labels == {"path": "/a b", "code": "200"} and http.value == 12
    mapped = map_samples(samples)
    assert mapped["queue_depth"] == 10.0  # vLLM waiting + TGI queue
    assert mapped["gpu_allocated"] == 150.0
    assert mapped["memory_rss"] == 1.5e9


def test_series_store_buckets_observations_at_fixed_resolution() -> None:
    store = SeriesStore(resolution_s=2.0, history=5)
    for i in range(20):
        store.add_observation(
            Observation(
                "b1", "m", "local", 200 if i % 10 else 502, latency_s=0.1 * (i + 1), ttft_s=0.05
            )
        )
    store.add_samples("b1", "m", parse_prometheus("tgi_queue_size 4"))
    values = store.tick()
    k = lambda metric: SeriesKey("b1", "m", metric)  # noqa: E731
    assert values[k("rps")] == 10.0
    assert values[k("error_rate")] == 0.1
    assert values[k("latency_p50")] == 0.1 * 11
    assert abs(values[k("latency_p95")] - 2.0) < 1e-9
    assert values[k("ttft")] == 0.05 and values[k("queue_depth")] == 4
    idle = store.tick()  # no traffic: rps 0, latency repeats, the series keep their resolution
    assert idle[k("rps")] == 0.0 and idle[k("latency_p50")] == 0.1 * 11
    for _ in range(10):
        store.tick()
    assert len(store.values(k("rps"))) == 5


def test_the_worker_s_own_metrics_map_to_our_names() -> None:
    from switchgear.worker.metrics import WorkerMetrics

    metrics = WorkerMetrics()
    metrics.set_queue_depth(3)
    mapped = map_samples(parse_prometheus(metrics.render().decode()))
    assert mapped["queue_depth"] == 3.0 and mapped["memory_rss"] > 10 * 2**20


def test_zscore_scores_big_shifts_only_after_warmup_and_the_gate() -> None:
    from switchgear.detector.zscore import ZScore

    det = ZScore(warmup=5, min_change=1.0)
    noise = [1.0 + 0.01 * ((i * 7) % 5 - 2) for i in range(30)]
    assert max(det.update(v) for v in noise) == 0.0
    assert det.update(1.5) == 0.0  # 50% above the level: below the gate of 100%
    assert det.update(5.0) > 0.97


def test_per_metric_params_override_the_detector_s() -> None:
    from switchgear.settings.detector import DetectorSettings

    s = DetectorSettings(params={"zscore": {"warmup": 5, "k": 3}, "zscore@ttft": {"warmup": 9}})
    assert s.params_for("zscore", "ttft") == {"warmup": 9, "k": 3}
    assert s.params_for("zscore", "rps") == {"warmup": 5, "k": 3}
