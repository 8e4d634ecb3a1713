"""Replica decisions an operator can trust: bounds per model, a cooldown between changes,
a stabilisation window for scale-in (the highest recommendation of the window wins, as the
Kubernetes HPA does), and never fewer replicas than are serving traffic.

Every decision carries its reason; :class:`DecisionLog` keeps them as
:class:`~switchgear.types.Action` records for ``/admin/actions`` and counts them for
``/metrics``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from switchgear.settings.scaling import ScalingSection
from switchgear.types import Action


@dataclass(frozen=True, slots=True)
class Decision:
    model: str
    current: int
    replicas: int
    reason: str

    @property
    def kind(self) -> str:
        if self.replicas > self.current:
            return "scale_up"
        return "scale_down" if self.replicas < self.current else "scale_hold"


class ScalePolicy:
    def __init__(self, settings: ScalingSection, clock: Callable[[], float] = time.monotonic):
        self.s = settings
        self.clock = clock
        self.last_change: dict[str, float] = {}
        self.history: dict[str, deque[tuple[float, int]]] = {}

    def decide(self, model: str, wanted: int, current: int, serving: int) -> Decision:
        """The replica count to set for ``wanted`` (asked), ``current`` (orchestrator) and
        ``serving`` (replicas answering traffic now)."""
        now = self.clock()
        bounds = self.s.bounds(model)
        reasons = [f"asked {wanted}"]
        target = wanted
        if target < bounds.min_replicas:
            target = bounds.min_replicas
            reasons.append(f"min_replicas {bounds.min_replicas}")
        if target > bounds.max_replicas:
            target = bounds.max_replicas
            reasons.append(f"max_replicas {bounds.max_replicas}")
        window = self.history.setdefault(model, deque())
        window.append((now, target))
        while window and window[0][0] < now - self.s.stabilization_s:
            window.popleft()
        if target < current:
            highest = max(n for _, n in window)
            if highest > target:
                target = min(current, highest)
                reasons.append(f"stabilisation window keeps {target}")
            if target < serving:
                target = min(current, serving)
                reasons.append(f"{serving} replicas serve traffic")
        if target != current:
            since = now - self.last_change.get(model, -float("inf"))
            if since < self.s.cooldown_s:
                reasons.append(f"cooldown ({self.s.cooldown_s - since:.0f}s left)")
                target = current
            else:
                self.last_change[model] = now
        return Decision(model, current, target, "; ".join(reasons))


class DecisionLog:
    """The last ``keep`` scale decisions (and failures) of the orchestrator plugins."""

    def __init__(self, keep: int = 200) -> None:
        self.actions: deque[Action] = deque(maxlen=keep)
        self.counts: dict[tuple[str, str], int] = {}

    def record(self, kind: str, target: str, reason: str, **detail: object) -> Action:
        action = Action(kind=kind, target=target, reason=reason, detail=detail)
        self.actions.append(action)
        self.counts[(target, kind)] = self.counts.get((target, kind), 0) + 1
        return action
