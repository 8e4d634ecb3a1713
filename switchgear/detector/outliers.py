"""Outlier detection across replicas: each replica judged against its peers and its past.

The rule (checked once per tick for every model, see docs/detector.md):

- a replica is *judged* on its last ``recent`` finished requests of the last ``window_s``
  seconds (the gateway's own requests plus probes), once it has at least ``min_samples``;
  with fewer than ``min_samples`` in the last half window it gets a probe request every
  ``probe_interval_s``, so that a replica the balancer starves is still judged;
- it is *slow* when its median latency over the window exceeds ``latency_ratio`` x the median
  of its judged, admitted peers' medians (Envoy's success-rate outlier detection applied to
  latency), or ``self_ratio`` x its own reference median (its healthy samples, used once it
  holds ``reference_samples``), by at least ``min_excess_s`` either way;
- it is *failing* when at least ``error_rate`` of its window's requests failed (and at least
  ``min_errors`` of them);
- ``consecutive`` slow checks in a row, or one failing check, make it an outlier; as many good checks with enough
  samples make an ejected replica a candidate for readmission (after a health probe).

Only a replica slow against its peers, or failing, is ejected; one slow only against its
own past counts towards the model's fallback (every replica bad). Guards: at most ``max_ejection_percent`` of a model's replicas are ejected (at least one),
and the last admitted replica is never ejected. When every replica of a model is bad the
model falls back along its chain (if it has one) instead, and is restored when one
replica is good again.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

from switchgear.settings.detector import OutlierSettings
from switchgear.types import Observation


@dataclass(slots=True)
class _Replica:
    samples: deque[tuple[float, float, bool]] = field(default_factory=lambda: deque(maxlen=4096))
    reference: deque[float] = field(default_factory=lambda: deque(maxlen=600))
    bad: int = 0
    good: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """One replica's state at one check."""

    backend_id: str
    samples: int
    median_s: float | None
    error_rate: float
    bad: bool  # bad for ``consecutive`` checks in a row
    good: bool  # judged and good for ``consecutive`` checks in a row
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """What the judge wants done for one model at one check."""

    eject: list[tuple[str, str]]  # (backend id, reason)
    readmit: list[str]
    fallback: bool | None  # True: fall back, False: restore, None: leave as is
    probe: list[str]  # replicas with too few samples to judge


class OutlierJudge:
    def __init__(self, settings: OutlierSettings) -> None:
        self.s = settings
        self.replicas: dict[str, _Replica] = {}

    def observe(self, obs: Observation, *, flagged: bool = False) -> None:
        """One finished request (the gateway's or a probe); ``flagged`` (ejected or in
        fallback) keeps it out of the replica's healthy reference."""
        rep = self.replicas.setdefault(obs.backend_id, _Replica())
        failed = obs.error is not None or obs.status >= 500
        rep.samples.append((obs.ts, obs.latency_s, failed))
        if not flagged and not failed and rep.bad == 0:
            rep.reference.append(obs.latency_s)

    def forget(self, backend_id: str) -> None:
        self.replicas.pop(backend_id, None)

    def _window(self, backend_id: str, now: float) -> list[tuple[float, float, bool]]:
        rep = self.replicas.get(backend_id)
        if rep is None:
            return []
        while rep.samples and rep.samples[0][0] < now - self.s.window_s:
            rep.samples.popleft()
        return list(rep.samples)

    def _reason(self, med: float, peer: float | None, ref: float | None, err: float) -> str:
        s = self.s
        if err >= s.error_rate:
            return f"error rate {err:.0%} over {s.window_s:g}s"
        if peer is not None and med > s.latency_ratio * peer and med - peer >= s.min_excess_s:
            return f"median latency {med:.3f}s > {s.latency_ratio:g} x peers' {peer:.3f}s"
        if ref is not None and med > s.self_ratio * ref and med - ref >= s.min_excess_s:
            return f"median latency {med:.3f}s > {s.self_ratio:g} x its usual {ref:.3f}s"
        return ""

    def verdicts(self, replicas: list[str], ejected: set[str], now: float) -> dict[str, Verdict]:
        """Judge ``replicas`` (one model's) and advance their bad/good counters."""
        windows = {b: self._window(b, now)[-self.s.recent :] for b in replicas}
        medians = {
            b: statistics.median(lat for _, lat, _ in w)
            for b, w in windows.items()
            if len(w) >= self.s.min_samples
        }
        out: dict[str, Verdict] = {}
        for b in replicas:
            rep = self.replicas.setdefault(b, _Replica())
            w = windows[b]
            errors = sum(1 for *_, failed in w if failed)
            err = errors / len(w) if w and errors >= self.s.min_errors else 0.0
            med = medians.get(b)
            if med is None:
                rep.bad = rep.good = 0
                out[b] = Verdict(b, len(w), None, err, False, False)
                continue
            peers = [m for p, m in medians.items() if p != b and p not in ejected]
            peer = statistics.median(peers) if peers else None
            ref = (
                statistics.median(rep.reference)
                if len(rep.reference) >= self.s.reference_samples
                else None
            )
            reason = self._reason(med, peer, ref, err)
            rep.bad, rep.good = (rep.bad + 1, 0) if reason else (0, rep.good + 1)
            n = self.s.consecutive
            # failing needs no repeat: a clean replica does not fail requests
            bad = rep.bad >= n or err >= self.s.error_rate
            out[b] = Verdict(b, len(w), med, err, bad, rep.good >= n, reason)
        return out

    def decide(  # noqa: PLR0913 - one model's full state
        self,
        replicas: list[str],
        ejected: set[str],
        has_fallback: bool,
        in_fallback: bool,
        now: float,
    ) -> Decision:
        verdicts = self.verdicts(replicas, ejected, now)
        fresh = now - self.s.window_s / 2
        probe = [
            b
            for b in replicas
            if sum(1 for t, *_ in self.replicas[b].samples if t >= fresh) < self.s.min_samples
        ]
        admitted = [b for b in replicas if b not in ejected]
        bad = [b for b in admitted if verdicts[b].bad]
        # a replica slow only against its own past (not its peers) is not ejected: the
        # whole model is slow (load, host), which is the fallback's case when all are
        ejectable = [b for b in bad if "usual" not in verdicts[b].reason]
        fallback: bool | None = None
        if has_fallback and not in_fallback and admitted and len(bad) == len(admitted):
            fallback = True
        elif in_fallback and any(v.good for v in verdicts.values()):
            fallback = False
        eject: list[tuple[str, str]] = []
        if fallback is None and not in_fallback:
            cap = max(1, int(len(replicas) * self.s.max_ejection_percent / 100))
            room = min(cap - len(ejected), len(admitted) - 1)
            # the worst first: the highest median latency over its peers
            ejectable.sort(key=lambda b: -(verdicts[b].median_s or 0.0))
            eject = [(b, verdicts[b].reason) for b in ejectable[: max(0, room)]]
        readmit = [b for b in replicas if b in ejected and verdicts[b].good]
        return Decision(eject, readmit, fallback, probe)
