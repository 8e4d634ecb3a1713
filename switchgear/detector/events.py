"""Events with hysteresis: scores become anomaly events that open and close once.

An event opens when a series' score stays at or above ``open_score`` for ``open_after``
consecutive ticks and closes when it stays below ``close_score`` for ``close_after``
ticks. While open, the event's score and contributions track the peak. The log keeps
open events and the last ``keep_recent`` closed ones for ``/admin/anomalies``.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from switchgear.types import AnomalyEvent


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """One series: a metric of a backend (``model`` may be None for worker-level metrics)."""

    backend_id: str | None
    model: str | None
    metric: str

    def __str__(self) -> str:
        return f"{self.backend_id or '-'}/{self.model or '-'}/{self.metric}"


@dataclass(slots=True)
class _State:
    above: int = 0
    below: int = 0
    event: AnomalyEvent | None = None


class Hysteresis:
    """Tracks every series' open/closed state and the recent events."""

    def __init__(
        self,
        *,
        open_score: float = 0.5,
        close_score: float = 0.3,
        open_after: int = 3,
        close_after: int = 30,
        keep_recent: int = 200,
    ) -> None:
        if close_score > open_score:
            raise ValueError("close_score must not exceed open_score")
        self.open_score, self.close_score = open_score, close_score
        self.open_after, self.close_after = open_after, close_after
        self._states: dict[SeriesKey, _State] = {}
        self.recent: deque[AnomalyEvent] = deque(maxlen=keep_recent)

    def observe(
        self,
        key: SeriesKey,
        score: float,
        ts: float,
        contributions: Mapping[str, float] | None = None,
    ) -> AnomalyEvent | None:
        """Feed one tick's score; returns the event when it opens or closes, else None."""
        st = self._states.setdefault(key, _State())
        contrib = dict(contributions or {})
        if st.event is None:
            st.above = st.above + 1 if score >= self.open_score else 0
            if st.above >= self.open_after:
                st.event = AnomalyEvent(
                    id=uuid.uuid4().hex[:12],
                    metric=key.metric,
                    score=score,
                    started_at=ts,
                    backend_id=key.backend_id,
                    model=key.model,
                    contributions=contrib,
                )
                st.below = 0
                return st.event
            return None
        if score > st.event.score:
            st.event = dataclasses.replace(st.event, score=score, contributions=contrib)
        st.below = st.below + 1 if score < self.close_score else 0
        if st.below >= self.close_after:
            closed = dataclasses.replace(st.event, ended_at=ts)
            st.event = None
            st.above = 0
            self.recent.append(closed)
            return closed
        return None

    def open_events(self) -> list[AnomalyEvent]:
        return [st.event for st in self._states.values() if st.event is not None]

    def recent_events(self) -> list[AnomalyEvent]:
        return list(self.recent)

    def forget(self, key: SeriesKey) -> None:
        self._states.pop(key, None)
