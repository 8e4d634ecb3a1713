"""Per-backend state: circuit breaker, ejection, outstanding requests and a latency EWMA.

The breaker of a backend is *closed* (traffic flows) until ``failures`` consecutive
failed attempts open it. An open breaker keeps the backend out of every request until
``cooldown`` seconds have passed; then exactly one request is let through as a probe
(*half-open*). A successful probe closes the breaker, so traffic returns to a recovered
backend by itself; a failed one opens it again for another cool-down.

The latency EWMA a balancer reads decays while a backend gets no answers: it halves every
``EWMA_HALF_LIFE_S`` of quiet (like the peak-EWMA balancers of Finagle and Tower). Without
it, two replicas at a low load are compared on their EWMAs alone (neither has requests
outstanding), and the one that was once slower, or merely slower at its first request,
never gets another request to show it is fast again: it sat idle for the whole of a
run. With it, an idle replica is tried again within seconds, and its EWMA is fresh.

Ejection is separate and manual (the detector's policy or an operator): an ejected
backend receives no traffic until :meth:`BackendState.readmit`.

All methods are synchronous and run on the event loop; there is no locking.

Fleets: every transition this process makes (eject, readmit, breaker open, breaker close) is
reported to ``on_change(backend_id, kind, reason)`` when set; the fleet state
(:mod:`switchgear.state.health`) publishes it, and applies the transitions of other gateways
through :meth:`BackendState.apply`, which never reports back (no echo). Outstanding
requests, latency and counters stay per process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
EWMA_ALPHA = 0.3
EWMA_HALF_LIFE_S = 5.0
_DECAY = math.log(2) / EWMA_HALF_LIFE_S


@dataclass(slots=True)
class BackendStats:
    outstanding: int = 0
    ewma_s: float | None = None
    ewma_at: float = 0.0  # when ``ewma_s`` was last updated (the state's clock)
    state: str = CLOSED
    consecutive_failures: int = 0
    opened_at: float = 0.0
    probe_in_flight: bool = False
    ejected: str | None = None
    successes: int = 0
    failures: int = 0
    last_error: str | None = None


def _decayed(st: BackendStats, now: float) -> float:
    assert st.ewma_s is not None
    quiet = now - st.ewma_at
    return st.ewma_s * math.exp(-_DECAY * quiet) if quiet > 0 else st.ewma_s


class BackendState:
    """Breaker, ejection and load statistics of every backend the gateway has talked to.

    ``stats`` passed to the ``order_backends`` hook is this object: plugins may call
    :meth:`outstanding`, :meth:`ewma` and :meth:`next_counter`.
    """

    def __init__(
        self, *, failures: int = 5, cooldown: float = 25.0, clock: Any = time.monotonic
    ) -> None:
        self.failure_threshold = failures
        self.cooldown = cooldown
        self.clock = clock
        self._stats: dict[str, BackendStats] = {}
        self._counters: dict[str, int] = {}
        self.on_change: Callable[[str, str, str], None] | None = None

    def _changed(self, backend_id: str, kind: str, reason: str) -> None:
        if self.on_change is not None:
            self.on_change(backend_id, kind, reason)

    def get(self, backend_id: str) -> BackendStats:
        st = self._stats.get(backend_id)
        if st is None:
            st = self._stats[backend_id] = BackendStats()
        return st

    # --- read by balancing plugins ----------------------------------------------------

    def outstanding(self, backend_id: str) -> int:
        st = self._stats.get(backend_id)
        return st.outstanding if st is not None else 0

    def ewma(self, backend_id: str) -> float | None:
        """The backend's latency EWMA, decayed by the time since its last answer."""
        st = self._stats.get(backend_id)
        if st is None or st.ewma_s is None:
            return None
        return _decayed(st, self.clock())

    def next_counter(self, key: str) -> int:
        """A per-key increasing counter (round robin state lives here, not in a module global)."""
        n = self._counters.get(key, 0)
        self._counters[key] = n + 1
        return n

    # --- availability -----------------------------------------------------------------

    def healthy(self, backend_id: str) -> bool:
        """True unless ejected or the breaker is open and still cooling down (no side effects)."""
        st = self._stats.get(backend_id)
        if st is None:
            return True
        if st.ejected is not None:
            return False
        if st.state == OPEN:
            return bool(self.clock() - st.opened_at >= self.cooldown)
        return not (st.state == HALF_OPEN and st.probe_in_flight)

    def admit(self, backend_id: str) -> bool:
        """May a request be sent now? An expired open breaker admits this one call as its probe."""
        st = self._stats.get(backend_id)
        if st is None:
            return True
        if st.ejected is not None:
            return False
        if st.state == CLOSED:
            return True
        if st.state == OPEN and self.clock() - st.opened_at >= self.cooldown:
            st.state = HALF_OPEN
            st.probe_in_flight = False
        if st.state == HALF_OPEN and not st.probe_in_flight:
            st.probe_in_flight = True
            return True
        return False

    # --- outcomes ---------------------------------------------------------------------

    def started(self, backend_id: str) -> None:
        self.get(backend_id).outstanding += 1

    def finished(self, backend_id: str) -> None:
        self.get(backend_id).outstanding -= 1

    def success(self, backend_id: str, latency_s: float | None = None) -> None:
        st = self.get(backend_id)
        st.successes += 1
        st.consecutive_failures = 0
        was = st.state
        st.state, st.probe_in_flight = CLOSED, False
        if was != CLOSED:
            self._changed(backend_id, "close", "")
        if latency_s is not None:
            now = self.clock()
            if st.ewma_s is None:
                st.ewma_s = latency_s
            else:
                last = _decayed(st, now)
                st.ewma_s = last + EWMA_ALPHA * (latency_s - last)
            st.ewma_at = now

    def failure(self, backend_id: str, reason: str) -> None:
        st = self.get(backend_id)
        st.failures += 1
        st.consecutive_failures += 1
        st.last_error = reason
        if st.state == HALF_OPEN or st.consecutive_failures >= self.failure_threshold:
            was = st.state
            st.state, st.opened_at, st.probe_in_flight = OPEN, self.clock(), False
            if was != OPEN:
                self._changed(backend_id, "open", reason)

    def neutral(self, backend_id: str) -> None:
        """The attempt ended without judging the backend (client error, 429, client gone)."""
        st = self.get(backend_id)
        if st.state == HALF_OPEN:
            st.probe_in_flight = False

    # --- ejection ---------------------------------------------------------------------

    def eject(self, backend_id: str, reason: str) -> None:
        self.get(backend_id).ejected = reason = reason or "ejected"
        self._changed(backend_id, "eject", reason)

    def readmit(self, backend_id: str, reason: str = "") -> None:
        self._readmit(backend_id)
        self._changed(backend_id, "readmit", reason)

    def _readmit(self, backend_id: str) -> None:
        st = self.get(backend_id)
        st.ejected = None
        st.state, st.consecutive_failures, st.probe_in_flight = CLOSED, 0, False

    def ejected_ids(self) -> dict[str, str]:
        """Ejected backends and why."""
        return {k: st.ejected for k, st in self._stats.items() if st.ejected is not None}

    def apply(self, backend_id: str, kind: str, reason: str, age_s: float = 0.0) -> None:
        """Apply another gateway's transition (``age_s`` ago); not reported to ``on_change``."""
        if kind == "eject":
            self.get(backend_id).ejected = reason or "ejected"
        elif kind == "readmit":
            self._readmit(backend_id)
        elif kind == "open":
            st = self.get(backend_id)
            if st.state != OPEN or st.opened_at < self.clock() - age_s:
                st.state, st.opened_at, st.probe_in_flight = OPEN, self.clock() - age_s, False
        elif kind == "close":
            st = self.get(backend_id)
            st.state, st.consecutive_failures, st.probe_in_flight = CLOSED, 0, False

    def describe(self, backend_id: str) -> dict[str, Any]:
        st = self.get(backend_id)
        return {
            "healthy": self.healthy(backend_id),
            "breaker": st.state,
            "consecutive_failures": st.consecutive_failures,
            "ejected": st.ejected,
            "outstanding": st.outstanding,
            "ewma_latency_s": st.ewma_s,
            "successes": st.successes,
            "failures": st.failures,
            "last_error": st.last_error,
        }
