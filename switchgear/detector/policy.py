"""The action policy: anomaly events in, actions on the gateway out.

- A latency / TTFT / error-rate anomaly on a backend ejects it; when the event closes the
  backend is probed and readmitted if healthy (:meth:`Policy.reprobe` retries the rest).
- When every backend of a model is ejected, the model falls back along its chain; the
  first readmitted backend restores it.
- A memory anomaly (leak or trend) on a worker restarts it; a backend the gateway cannot
  restart gets an ``alert`` action instead. Memory never scales.
- :class:`Autoscaler` turns a model's arrival-rate history (requests started per second,
  :mod:`switchgear.detector.load`: it keeps rising when the replicas are saturated, where
  the completed rate flattens) into a replica count (Holt forecast over a horizon against
  per-replica capacity; sustained idle scales in), bounded and cooled down.
Every action is recorded for ``/admin/actions``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace

from switchgear.detector.control import GatewayControl
from switchgear.detector.outliers import OutlierJudge
from switchgear.settings.detector import PolicySettings, ScalingSettings
from switchgear.types import Action, AnomalyEvent


class Autoscaler:
    """Replica decisions for one model from its arrivals per second, one point per tick."""

    def __init__(self, settings: ScalingSettings, resolution_s: float = 1.0) -> None:
        self.s = settings
        self.resolution_s = resolution_s
        self.last_change = -math.inf
        self.wanted_since: float | None = None  # since when the forecast asks for more

    def forecast(self, rps: Sequence[float], alpha: float = 0.1, beta: float = 0.05) -> float:
        """Holt's linear trend, ``horizon_s`` ahead of the last point."""
        if not rps:
            return 0.0
        level, trend = rps[0], 0.0
        for x in rps[1:]:
            prev = level
            level = alpha * x + (1 - alpha) * (level + trend)
            trend = beta * (level - prev) + (1 - beta) * trend
        return max(0.0, level + trend * self.s.horizon_s / self.resolution_s)

    def desired(self, rps: Sequence[float], current: int, now: float) -> int | None:
        """The replica count to ask for, or None to stay (bounds and cool-down applied)."""
        if now - self.last_change < self.s.cooldown_s:
            return None
        want = current
        need = math.ceil(self.forecast(rps) / self.s.rps_per_replica)
        idle_points = int(self.s.idle_for_s / self.resolution_s)
        if need > current:
            if self.wanted_since is None:
                self.wanted_since = now
            if now - self.wanted_since < self.s.sustain_s:
                return None
            want = need
        elif len(rps) >= idle_points and max(rps[-idle_points:]) <= self.s.idle_rps:
            want = current - 1
        if need <= current:
            self.wanted_since = None
        want = max(self.s.min_replicas, min(self.s.max_replicas, want))
        if want == current:
            return None
        self.last_change, self.wanted_since = now, None
        return want

    def hold(self) -> None:
        """The load is not the model's own now (a fallback moves it): start sustaining again."""
        self.wanted_since = None


def load_rose(rps: Sequence[float], rise: float) -> float | None:
    """How many times the model's offered load (its arrivals per second, one point per
    tick) rose, when by at least ``rise``: its mean of the last 3 points against its median
    over the 60 before them (a burst), or its mean of the last 10 points against the lowest
    10-point mean of the 120 before them (a ramp); None otherwise (or with fewer than 10
    points before). Arrivals, not completions: the completed rate flattens once the
    replicas are saturated, and stays put when every replica is slower at a steady load."""
    if len(rps) < 13:
        return None
    before = sorted(rps[-63:-3])
    burst = sum(rps[-3:]) / 3 / max(before[len(before) // 2], 1e-9)
    past = rps[-130:-10]
    means = [sum(past[i : i + 10]) / 10 for i in range(0, len(past) - 9)]
    ramp = sum(rps[-10:]) / 10 / max(min(means), 1e-9) if means else 0.0
    most = max(burst, ramp)
    return most if most >= rise and sum(rps[-3:]) > 0 else None


class Policy:
    def __init__(self, settings: PolicySettings | None = None, *, keep: int = 500) -> None:
        self.settings = settings or PolicySettings()
        self.actions: deque[Action] = deque(maxlen=keep)
        self.ejected: dict[str, str] = {}  # backend id -> model
        #: model -> its probed replicas with a failure in their window (a burst of probes)
        self.suspects: dict[str, frozenset[str]] = {}
        self.open_events: dict[str, AnomalyEvent] = {}  # backend id -> ejecting event
        self.fallback_active: set[str] = set()
        self.scalers: dict[str, Autoscaler] = {}
        self.judge = OutlierJudge(self.settings.outliers)
        #: ejected by the outlier rule: readmitted by it, not by :meth:`reprobe`
        self.outlier_ejected: set[str] = set()
        self.restarted: dict[str, float] = {}  # backend id -> time of the leak restart

    def _record(
        self,
        kind: str,
        target: str,
        reason: str,
        event: AnomalyEvent | None = None,
        **detail: object,
    ) -> Action:
        action = Action(
            kind=kind,
            target=target,
            reason=reason,
            event_id=event.id if event else None,
            detail=detail,
        )
        self.actions.append(action)
        return action

    async def handle(self, event: AnomalyEvent, control: GatewayControl) -> list[Action]:
        if event.backend_id is None:
            return []
        if event.metric in self.settings.eject_metrics:
            if event.open:
                return await self._eject(event, control)
            return await self._recovered(event, control)
        if event.metric in self.settings.memory_metrics and event.open:
            return await self._restart(event, control)
        return []

    async def _eject(self, event: AnomalyEvent, control: GatewayControl) -> list[Action]:
        backend_id, model = event.backend_id, event.model
        assert backend_id is not None
        out: list[Action] = []
        self.open_events[backend_id] = event
        if backend_id not in self.ejected and self._may_eject(model, control):
            reason = f"{event.metric} anomaly (score {event.score:.2f})"
            await control.eject(backend_id, reason)
            self.ejected[backend_id] = model or ""
            out.append(self._record("eject", backend_id, reason, event))
            self._fresh(model, control)
        if model and model not in self.fallback_active:
            ids = {b.id for b in control.backends(model)}
            if ids and ids <= set(self.ejected):
                await control.set_fallback(model, True)
                self.fallback_active.add(model)
                out.append(self._record("fallback", model, "all backends ejected", event))
        return out

    def _fresh(self, model: str | None, control: GatewayControl) -> None:
        if model:
            self.judge.fresh([b.id for b in control.backends(model)], time.time())

    def _may_eject(self, model: str | None, control: GatewayControl) -> bool:
        """The guards for a model without a fallback chain: at most ``max_ejection_percent``
        of its replicas (at least one), and never the last admitted one. (With a chain,
        ejecting every replica falls the model back.)"""
        if not model or control.has_fallback(model):
            return True
        ids = [b.id for b in control.backends(model)]
        out = sum(1 for b in ids if b in self.ejected)
        cap = max(1, int(len(ids) * self.settings.outliers.max_ejection_percent / 100))
        return out < cap and len(ids) - out > 1

    async def outliers(
        self, model: str, control: GatewayControl, now: float, rps: Sequence[float] = ()
    ) -> tuple[list[Action], list[str]]:
        """Apply the outlier rule to ``model``: the actions taken and the replicas that
        need a probe request. ``rps`` is the model's arrivals per second: every replica slow
        against its own past while they rose is load, which no fallback answers."""
        out: list[Action] = []
        ids = [b.id for b in control.backends(model)]
        ejected = {b for b in ids if b in self.ejected}
        d = self.judge.decide(
            ids, ejected, control.has_fallback(model), model in self.fallback_active, now
        )
        if load_rose(rps, self.judge.s.load_rise):
            # the offered load rose: slow replicas are queueing, not faulty (one may queue
            # more than its peer for a while); failing ones are still ejected
            d = replace(d, eject=[e for e in d.eject if e[0] in d.failing])
            if d.fallback is True and not d.failing:
                d = replace(d, fallback=None)
        self.suspects[model] = d.suspect
        for backend_id, reason in d.eject:
            await control.eject(backend_id, reason)
            self.ejected[backend_id] = model
            self.outlier_ejected.add(backend_id)
            out.append(self._record("eject", backend_id, reason))
        for backend_id in d.readmit:
            if backend_id not in self.open_events and await control.probe(backend_id):
                self.ejected.pop(backend_id, None)
                self.outlier_ejected.discard(backend_id)
                await control.readmit(backend_id)
                out.append(self._record("readmit", backend_id, "latency and errors healthy"))
        if d.fallback is True:
            await control.set_fallback(model, True)
            self.fallback_active.add(model)
            out.append(self._record("fallback", model, "every replica slow or failing"))
        elif d.fallback is False:
            await control.set_fallback(model, False)
            self.fallback_active.discard(model)
            out.append(self._record("restore", model, "a replica is healthy again"))
        if out:  # the load is spread anew: every replica's window starts again
            self.judge.fresh(ids, now)
        return out, d.probe

    async def leak(
        self, backend_id: str, rate_mb_s: float, control: GatewayControl, now: float
    ) -> list[Action]:
        """Restart a backend whose memory grows steadily (an alert when it cannot be)."""
        if now - self.restarted.get(backend_id, -math.inf) < self.settings.leak.cooldown_s:
            return []
        self.restarted[backend_id] = now
        reason = f"memory grows {rate_mb_s:.1f} MB/s for {self.settings.leak.window_s:g}s"
        if await control.restart(backend_id):
            return [self._record("restart", backend_id, reason)]
        return [self._record("alert", backend_id, f"{reason}; cannot restart it")]

    async def _recovered(self, event: AnomalyEvent, control: GatewayControl) -> list[Action]:
        assert event.backend_id is not None
        self.open_events.pop(event.backend_id, None)
        return await self._readmit(event.backend_id, control, event)

    async def _readmit(
        self, backend_id: str, control: GatewayControl, event: AnomalyEvent | None
    ) -> list[Action]:
        if backend_id not in self.ejected or backend_id in self.open_events:
            return []
        if backend_id in self.outlier_ejected:
            return []
        if not await control.probe(backend_id):
            return []
        model = self.ejected.pop(backend_id)
        await control.readmit(backend_id)
        self._fresh(model, control)
        out = [self._record("readmit", backend_id, "anomaly closed and probe healthy", event)]
        if model in self.fallback_active:
            await control.set_fallback(model, False)
            self.fallback_active.discard(model)
            out.append(self._record("restore", model, f"{backend_id} healthy again", event))
        return out

    async def reprobe(self, control: GatewayControl) -> list[Action]:
        """Probe ejected backends whose anomaly has closed; readmit the healthy ones."""
        out: list[Action] = []
        for backend_id in list(self.ejected):
            out += await self._readmit(backend_id, control, None)
        return out

    async def _restart(self, event: AnomalyEvent, control: GatewayControl) -> list[Action]:
        """Restart the backend; one the gateway cannot restart gets an alert instead.
        Memory never scales (scaling follows the offered load only)."""
        backend_id = event.backend_id
        assert backend_id is not None
        reason = f"{event.metric} growth (score {event.score:.2f})"
        if await control.restart(backend_id):
            return [self._record("restart", backend_id, reason, event)]
        return [self._record("alert", backend_id, f"{reason}; cannot restart it", event)]

    async def autoscale(
        self,
        model: str,
        rps: Sequence[float],
        control: GatewayControl,
        now: float | None = None,
        resolution_s: float = 1.0,
    ) -> list[Action]:
        """Evaluate scaling for ``model`` from its arrivals per second (one point per tick)."""
        if not self.settings.scaling.enabled:
            return []
        scaler = self.scalers.setdefault(model, Autoscaler(self.settings.scaling, resolution_s))
        if self.fallback_active:
            # a fallback moves one model's load onto another: neither rate is its own
            scaler.hold()
            return []
        current = len(control.backends(model))
        want = scaler.desired(rps, current, time.time() if now is None else now)
        if want is None:
            return []
        result = await control.scale(model, want)
        kind = "scale_up" if want > current else "scale_down"
        return [
            self._record(
                kind,
                model,
                f"forecast {scaler.forecast(rps):.1f} rps for {current} replicas",
                None,
                replicas=want,
                reached=result.replicas if result else None,
            )
        ]
