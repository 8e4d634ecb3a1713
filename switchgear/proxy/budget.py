"""The first-byte budget of one request, shared by its retries and its fallback models.

``timeouts.request`` (streams) or ``timeouts.request_json`` (non-streaming requests, whose
first byte is the whole answer) bounds the time from the first upstream call to the first
byte of the answer, across every attempt of every model of the fallback chain.
:func:`first_byte` still bounds each attempt; an attempt never gets more than what is left. A model that
has fallbacks after it may use at most ``timeouts.model_share`` of what is left when it
starts, so a primary that never answers cannot starve its fallback; the last model of
the chain gets all that is left.

With the defaults (``request: 60``, ``model_share: 0.5``, ``stream_ttft: 15``) a primary that never
answers is given up after at most 30 s (two silent replicas, or one and no retry on the
same backend), and the fallback starts with at least 30 s, two attempts' worth.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from switchgear.settings.gateway import Timeouts


@dataclass(slots=True)
class Budget:
    total: float
    share: float
    clock: Callable[[], float] = time.monotonic
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self.deadline = self.clock() + self.total

    @classmethod
    def of(
        cls, timeouts: Timeouts, *, stream: bool, clock: Callable[[], float] = time.monotonic
    ) -> Budget:
        total = timeouts.request if stream else timeouts.request_json
        return cls(total, timeouts.model_share, clock)

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def model_deadline(self, *, last: bool) -> float:
        """The clock time by which a model starting now must have answered."""
        left = self.remaining()
        return self.clock() + (left if last else left * self.share)

    def attempt_timeout(self, ttft: float, until: float) -> float:
        """The first-byte deadline of an attempt starting now (0 when nothing is left)."""
        return max(0.0, min(ttft, until - self.clock(), self.remaining()))


def first_byte(timeouts: Timeouts, *, stream: bool) -> float:
    """The longest wait of one attempt for its first byte."""
    return min(timeouts.ttft, timeouts.stream_ttft) if stream else timeouts.ttft
