"""What the admin API and ``/metrics`` show of the detector (mounted by the gateway).

``anomalies_payload`` and ``actions_payload`` are the JSON bodies of ``GET
/admin/anomalies`` and ``GET /admin/actions``; :class:`DetectorMetrics` defines the
Prometheus series for both on a given registry (never the global one, so several apps
and tests can coexist).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from switchgear.detector.engine import DetectorEngine
from switchgear.types import Action, AnomalyEvent


def event_dict(event: AnomalyEvent) -> dict[str, Any]:
    out = dataclasses.asdict(event)
    out["contributions"] = dict(event.contributions)
    out["open"] = event.open
    return out


def action_dict(action: Action) -> dict[str, Any]:
    out = dataclasses.asdict(action)
    out["detail"] = dict(action.detail)
    return out


def anomalies_payload(
    open_events: Iterable[AnomalyEvent], recent: Iterable[AnomalyEvent]
) -> dict[str, Any]:
    return {
        "open": [event_dict(e) for e in open_events],
        "recent": [event_dict(e) for e in reversed(list(recent))],
    }


def actions_payload(actions: Iterable[Action]) -> dict[str, Any]:
    return {"actions": [action_dict(a) for a in reversed(list(actions))]}


def series_payload(engine: DetectorEngine, since: float | None) -> dict[str, Any]:
    """``GET /admin/series``: every series' ``[ts, value, score|null]`` points after ``since``."""
    series = []
    for key in list(engine.store.series):
        points = engine.points(key, since)
        if points:
            series.append(
                {
                    "backend_id": key.backend_id,
                    "model": key.model,
                    "metric": key.metric,
                    "points": [list(p) for p in points],
                }
            )
    return {"resolution_s": engine.settings.resolution_s, "series": series}


class DetectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "switchgear_anomalies_total", "Anomaly events opened", ["metric"], registry=registry
        )
        self.closed = Counter(
            "switchgear_anomalies_closed_total",
            "Anomaly events closed",
            ["metric"],
            registry=registry,
        )
        self.open = Gauge("switchgear_anomalies_open", "Anomaly events open now", registry=registry)
        self.actions = Counter(
            "switchgear_actions_total", "Policy actions taken", ["kind"], registry=registry
        )

    def on_event(self, event: AnomalyEvent, open_now: int) -> None:
        if event.open:
            self.events.labels(event.metric).inc()
        else:
            self.closed.labels(event.metric).inc()
        self.open.set(open_now)

    def on_actions(self, actions: Iterable[Action]) -> None:
        for action in actions:
            self.actions.labels(action.kind).inc()
