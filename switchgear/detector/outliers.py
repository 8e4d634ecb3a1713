"""Outlier detection across replicas: each replica judged against its peers and its past.

The rule (checked once per tick for every model, see docs/detector.md):

- a replica's *window* holds its finished requests of the last ``window_s`` seconds since
  the model's last change (an ejection, a readmission, a fallback or its restore: samples
  from before a change were taken under another spread of the load, so every replica of
  the model starts a fresh window then);
- it is judged on the median latency of its newest ``recent`` requests (the gateway's and
  probes) once it has ``min_samples`` of them; an ejected replica, which gets probes only,
  on the median of its probes against its peers' probes (like with like);
- it gets a probe request every ``probe_interval_s`` when it has fewer than ``min_samples``
  traffic requests in the last half window (the balancer starves it, it is ejected, or the
  model is in fallback) or a failure in its window; then its admitted peers are probed
  too, so that its probe latency has peers to be compared with;
- it is *slow* when its median exceeds ``latency_ratio`` x the median of its admitted
  peers' medians (Envoy's success-rate outlier detection applied to latency), or
  ``self_ratio`` x its own reference median (its healthy traffic samples, used once it holds
  ``reference_samples``), by at least ``min_excess_s`` either way;
- it is *failing* when at least ``min_errors`` of its newest ``error_samples`` requests
  (traffic and probes) failed and they are at least ``error_rate`` of them; that needs no
  latency median, so a failing replica that the retries starve is judged too;
  a replica that has never answered (a worker still loading at start-up) is not failing:
  the health checks and the breaker own it until its first answer;
- ``consecutive`` slow checks in a row whose excess latencies sum to ``excess_evidence_s``
  (a 10x slower replica needs the ``consecutive`` checks, a replica 130 ms slower five),
  or one failing check, make it an outlier; ``consecutive`` good checks make an ejected
  replica a candidate for readmission (after a health probe).

Only a replica slow against its peers, or failing, is ejected; one slow only against its
own past counts towards the model's fallback (every replica bad). Guards: at most
``max_ejection_percent`` of a model's replicas are ejected (at least one), and the last
admitted replica is never ejected. When every replica of a model is bad the model falls
back along its chain (if it has one) instead, and is restored when one replica is good
again (its probes as fast as its usual traffic).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

from switchgear.settings.detector import OutlierSettings
from switchgear.types import Observation


@dataclass(slots=True)
class _Replica:
    #: (finish time, latency, failed, probe)
    samples: deque[tuple[float, float, bool, bool]] = field(
        default_factory=lambda: deque(maxlen=4096)
    )
    reference: deque[float] = field(default_factory=lambda: deque(maxlen=600))
    since: float = -math.inf  # samples before the model's last change are dropped
    bad: int = 0
    excess: float = 0.0  # seconds of excess latency summed over the slow checks in a row
    good: int = 0
    #: answered once at least: until then its failures are a start-up (the worker still
    #: loading its model), which the health checks and the breaker own, not the judge
    answered: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """One replica's state at one check."""

    backend_id: str
    samples: int
    median_s: float | None
    error_rate: float
    bad: bool  # bad for ``consecutive`` checks in a row (or failing now)
    good: bool  # judged and good for ``consecutive`` checks in a row
    reason: str = ""
    failures: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    """What the judge wants done for one model at one check."""

    eject: list[tuple[str, str]]  # (backend id, reason)
    readmit: list[str]
    fallback: bool | None  # True: fall back, False: restore, None: leave as is
    probe: list[str]  # replicas to send a probe request to
    slow_only: bool = False  # every bad replica is slow only against its own past


def _medians(lat: dict[str, list[float]], n: int) -> dict[str, float]:
    return {b: statistics.median(v) for b, v in lat.items() if len(v) >= n}


class OutlierJudge:
    def __init__(self, settings: OutlierSettings) -> None:
        self.s = settings
        self.replicas: dict[str, _Replica] = {}

    def observe(self, obs: Observation, *, flagged: bool = False, probe: bool = False) -> None:
        """One finished request (the gateway's, or a probe); ``flagged`` (ejected or in
        fallback) and probes stay out of the replica's healthy reference."""
        rep = self.replicas.setdefault(obs.backend_id, _Replica())
        failed = obs.error is not None or obs.status >= 500
        rep.samples.append((obs.ts, obs.latency_s, failed, probe))
        rep.answered = rep.answered or not failed
        if not flagged and not probe and not failed and rep.bad == 0:
            rep.reference.append(obs.latency_s)

    def forget(self, backend_id: str) -> None:
        self.replicas.pop(backend_id, None)

    def fresh(self, replicas: list[str], now: float) -> None:
        """The model changed (ejection, readmission, fallback, restore): every replica's
        window starts again, and so do its counters."""
        for b in replicas:
            rep = self.replicas.setdefault(b, _Replica())
            rep.since, rep.bad, rep.good, rep.excess = now, 0, 0, 0.0

    def _window(self, backend_id: str, now: float) -> list[tuple[float, float, bool, bool]]:
        rep = self.replicas.get(backend_id)
        if rep is None:
            return []
        start = max(now - self.s.window_s, rep.since)
        while rep.samples and rep.samples[0][0] < start:
            rep.samples.popleft()
        return list(rep.samples)

    def _reason(  # noqa: PLR0913 - the replica's figures against the rule's
        self, med: float, peer: float | None, ref: float | None, err: float, what: str
    ) -> str:
        s = self.s
        if err >= s.error_rate:
            return f"error rate {err:.0%} of its last {s.error_samples} requests"
        if peer is not None and med > s.latency_ratio * peer and med - peer >= s.min_excess_s:
            return f"median {what} {med:.3f}s > {s.latency_ratio:g} x peers' {peer:.3f}s"
        if ref is not None and med > s.self_ratio * ref and med - ref >= s.min_excess_s:
            return f"median {what} {med:.3f}s > {s.self_ratio:g} x its usual {ref:.3f}s"
        return ""

    def verdicts(self, replicas: list[str], ejected: set[str], now: float) -> dict[str, Verdict]:
        """Judge ``replicas`` (one model's) and advance their bad/good counters."""
        s = self.s
        windows = {b: self._window(b, now) for b in replicas}
        answered = _medians(
            {b: [x[1] for x in w][-s.recent :] for b, w in windows.items()}, s.min_samples
        )
        probes = _medians(
            {b: [x[1] for x in w if x[3]][-s.recent :] for b, w in windows.items()},
            s.min_samples,
        )
        out: dict[str, Verdict] = {}
        for b in replicas:
            rep = self.replicas.setdefault(b, _Replica())
            last = windows[b][-s.error_samples :]
            failures = sum(1 for x in last if x[2])
            err = failures / len(last) if failures >= s.min_errors and rep.answered else 0.0
            # an ejected replica gets probes only: compared with its peers' probes
            pool, what = (probes, "probe latency") if b in ejected else (answered, "latency")
            med = pool.get(b)
            if med is None:
                # no median, but failing is judged on what there is: a replica whose
                # requests fail is retried elsewhere and starved of samples
                failing = err >= s.error_rate
                rep.bad, rep.good = (rep.bad + 1 if failing else 0), 0
                reason = self._reason(0.0, None, None, err, what) if failing else ""
                out[b] = Verdict(b, len(last), None, err, failing, False, reason, failures)
                continue
            peers = [m for p, m in pool.items() if p != b and p not in ejected]
            peer = statistics.median(peers) if peers else None
            ref = (
                statistics.median(rep.reference)
                if len(rep.reference) >= s.reference_samples
                else None
            )
            reason = self._reason(med, peer, ref, err, what)
            rep.bad, rep.good = (rep.bad + 1, 0) if reason else (0, rep.good + 1)
            base = min(x for x in (peer, ref, med) if x is not None)
            rep.excess = rep.excess + med - base if reason else 0.0
            # slow long enough: ``consecutive`` checks, and the longer the smaller the
            # excess (a neighbour stalling a process briefly adds little); failing needs
            # no repeat: a clean replica does not fail requests
            slow = rep.bad >= s.consecutive and rep.excess >= s.excess_evidence_s
            bad = slow or err >= s.error_rate
            good = rep.good >= s.consecutive
            out[b] = Verdict(b, len(last), med, err, bad, good, reason, failures)
        return out

    def _probe(self, replicas: list[str], ejected: set[str], verdicts: dict[str, Verdict],
               now: float) -> list[str]:  # fmt: skip
        fresh = now - self.s.window_s / 2
        want = [
            b
            for b in replicas
            if verdicts[b].failures
            or sum(1 for t, *_, p in self.replicas[b].samples if t >= fresh and not p)
            < self.s.min_samples
        ]
        if not want:
            return []
        # the admitted peers too: probe latency is compared with probe latency
        return [b for b in replicas if b in want or b not in ejected]

    def decide(  # noqa: PLR0913 - one model's full state
        self,
        replicas: list[str],
        ejected: set[str],
        has_fallback: bool,
        in_fallback: bool,
        now: float,
    ) -> Decision:
        verdicts = self.verdicts(replicas, ejected, now)
        probe = self._probe(replicas, ejected, verdicts, now)
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
        slow_only = bool(bad) and not ejectable
        return Decision(eject, readmit, fallback, probe, slow_only)
