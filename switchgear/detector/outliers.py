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
  model is in fallback), a failure in its window, or, admitted, a median or newest request
  over the rule (a slowdown may have begun); its admitted peers are probed too (probes are
  compared with probes); the last two kinds (suspects) get ``suspect_probes`` back to back;
- it is *slow* when its median exceeds ``latency_ratio`` x the median of its admitted
  peers' medians (Envoy's success-rate outlier detection applied to latency), or of
  the peers' latency at the same moments when that is higher (``align_s``: a stall of
  the whole host is no replica's fault), or
  ``self_ratio`` x its own reference median (its healthy traffic samples once it holds
  ``reference_samples``, until then its model's replicas' pooled), and either way by at
  least the *floor*: ``excess_mads`` x the median absolute deviation of what it is compared
  with, never less than ``min_excess_s``: the floor scales with the model's latency noise
  on its host (a 3x slowdown of a 50 ms model is 100 ms, of a 10 ms one 20 ms);
- it is *failing* when at least ``min_errors`` of its newest ``error_samples`` requests
  (traffic and probes) failed and they are at least ``error_rate`` of them; that needs no
  latency median, so a failing replica that the retries starve is judged too;
  a replica that has never answered (a worker still loading at start-up) is not failing:
  the health checks and the breaker own it until its first answer, and its failures from
  before that answer never enter its window;
- ``consecutive`` slow checks in a row whose excess latencies sum to ``excess_evidence_s``
  or to ``evidence_medians`` x the median it was compared with, whichever is less (a 10x
  slower replica needs the ``consecutive`` checks, a 3x slower one ``evidence_medians / 2``),
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

import bisect
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
    relative: float = 0.0  # the same excesses, each over the median it was compared with
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
    lagging: bool = False  # its newest request alone over the rule: a burst of probes


@dataclass(frozen=True, slots=True)
class Decision:
    """What the judge wants done for one model at one check."""

    eject: list[tuple[str, str]]  # (backend id, reason)
    readmit: list[str]
    fallback: bool | None  # True: fall back, False: restore, None: leave as is
    probe: list[str]  # replicas to send a probe request to
    slow_only: bool = False  # every bad replica is slow only against its own past
    failing: frozenset[str] = frozenset()  # the replicas bad for their errors
    suspect: frozenset[str] = frozenset()  # probed, failed or slow: a burst of probes


def _medians(lat: dict[str, list[float]], n: int) -> dict[str, float]:
    return {b: statistics.median(v) for b, v in lat.items() if len(v) >= n}


def mad(values: list[float]) -> float:
    """The median absolute deviation from the median (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    mid = statistics.median(values)
    return statistics.median([abs(v - mid) for v in values])


class OutlierJudge:
    def __init__(self, settings: OutlierSettings) -> None:
        self.s = settings
        self.replicas: dict[str, _Replica] = {}

    def observe(self, obs: Observation, *, flagged: bool = False, probe: bool = False) -> None:
        """One finished request (the gateway's, or a probe); ``flagged`` (ejected or in
        fallback) and probes stay out of the replica's healthy reference."""
        rep = self.replicas.setdefault(obs.backend_id, _Replica())
        failed = obs.error is not None or obs.status >= 500
        if failed and not rep.answered:
            # a start-up (the worker still loading): kept out of the window, so that its
            # first answer does not make those failures count
            return
        rep.samples.append((obs.ts, obs.latency_s, failed, probe))
        rep.answered = True
        if not flagged and not probe and not failed and rep.bad == 0:
            rep.reference.append(obs.latency_s)

    def forget(self, backend_id: str) -> None:
        self.replicas.pop(backend_id, None)

    def fresh(self, replicas: list[str], now: float) -> None:
        """The model changed (ejection, readmission, fallback, restore): every replica's
        window starts again, and so do its counters."""
        for b in replicas:
            rep = self.replicas.setdefault(b, _Replica())
            rep.since, rep.bad, rep.good, rep.excess, rep.relative = now, 0, 0, 0.0, 0.0

    def _window(self, backend_id: str, now: float) -> list[tuple[float, float, bool, bool]]:
        rep = self.replicas.get(backend_id)
        if rep is None:
            return []
        start = max(now - self.s.window_s, rep.since)
        while rep.samples and rep.samples[0][0] < start:
            rep.samples.popleft()
        return list(rep.samples)

    def floor(self, spread: float) -> float:
        """The least excess that counts, against latencies of median deviation ``spread``."""
        return max(self.s.min_excess_s, self.s.excess_mads * spread)

    def _reason(  # noqa: PLR0913 - the replica's figures against the rule's
        self,
        med: float,
        peer: tuple[float, float] | None,
        ref: tuple[float, float] | None,
        err: float,
        what: str,
    ) -> str:
        """``peer`` and ``ref``: (median, median absolute deviation) compared with."""
        s = self.s
        if err >= s.error_rate:
            return f"error rate {err:.0%} of its last {s.error_samples} requests"
        if peer is not None:
            (p, spread), ratio = peer, s.latency_ratio
            if med > ratio * p and med - p >= self.floor(spread):
                return f"median {what} {med:.3f}s > {ratio:g} x peers' {p:.3f}s"
        if ref is not None:
            (r, spread), ratio = ref, s.self_ratio
            if med > ratio * r and med - r >= self.floor(spread):
                return f"median {what} {med:.3f}s > {ratio:g} x its usual {r:.3f}s"
        return ""

    def _pooled(self, replicas: list[str]) -> tuple[float, float] | None:
        """The model's usual latency, (median, MAD) of its replicas' references pooled: the
        reference of a replica without ``reference_samples`` of its own (the balancer
        starved it, or it was ejected long), so "every replica slow" judges every one."""
        pool = [x for b in replicas if (r := self.replicas.get(b)) for x in r.reference]
        if len(pool) < self.s.reference_samples:
            return None
        return statistics.median(pool), mad(pool)

    def _aligned(self, mine: list[tuple[float, float, bool, bool]],
                 timeline: list[tuple[float, float, str, bool]], times: list[float],
                 peers: set[str], probes_only: bool) -> float | None:  # fmt: skip
        """The peers' median latency at the moments of ``mine``: per request of ``mine``,
        the median of the ``peers``' that finished while it ran or within ``align_s``
        before its start or after its end (``timeline``: the model's samples by finish
        time, ``times`` their finish times); the median of those (None where fewer than half of ``mine`` have any)."""
        a, local = self.s.align_s, []
        for t, lat, *_ in mine:
            lo, hi = bisect.bisect_left(times, t - lat - a), bisect.bisect_right(times, t + a)
            near = [x[1] for x in timeline[lo:hi] if x[2] in peers and (x[3] or not probes_only)]
            if near:
                local.append(statistics.median(near))
        return statistics.median(local) if local and 2 * len(local) >= len(mine) else None

    def verdicts(self, replicas: list[str], ejected: set[str], now: float) -> dict[str, Verdict]:
        """Judge ``replicas`` (one model's) and advance their bad/good counters."""
        s = self.s
        windows = {b: self._window(b, now) for b in replicas}
        newest = {b: [x[1] for x in w][-s.recent :] for b, w in windows.items()}
        newest_probes = {b: [x[1] for x in w if x[3]][-s.recent :] for b, w in windows.items()}
        answered = _medians(newest, s.min_samples)
        probes = _medians(newest_probes, s.min_samples)
        pooled = self._pooled(replicas)
        timeline = sorted((x[0], x[1], b, x[3]) for b, w in windows.items() for x in w)
        times = [x[0] for x in timeline]
        out: dict[str, Verdict] = {}
        for b in replicas:
            rep = self.replicas.setdefault(b, _Replica())
            last = windows[b][-s.error_samples :]
            failures = sum(1 for x in last if x[2])
            err = failures / len(last) if failures >= s.min_errors else 0.0
            # an ejected replica gets probes only: compared with its peers' probes
            pool, what = (probes, "probe latency") if b in ejected else (answered, "latency")
            lat = newest_probes if b in ejected else newest
            med = pool.get(b)
            others = [p for p in pool if p != b and p not in ejected]
            peer = (
                (statistics.median([pool[p] for p in others]),
                 mad([x for p in others for x in lat[p]]))
                if others else None
            )  # fmt: skip
            if peer is not None and med is not None and s.align_s > 0:
                # like with like in time too: never below the peers at the same moments
                mine = [x for x in windows[b] if x[3] or b not in ejected][-s.recent :]
                at_once = self._aligned(mine, timeline, times, set(others), b in ejected)
                if at_once is not None and at_once > peer[0]:
                    peer = (at_once, peer[1])
            ref = (
                (statistics.median(rep.reference), mad(list(rep.reference)))
                if len(rep.reference) >= s.reference_samples
                else pooled
            )
            # its newest request alone over the rule: a slowdown may have begun
            lagging = bool(lat[b] and self._reason(lat[b][-1], peer, ref, 0.0, what))
            if med is None:
                # no median, but failing is judged on what there is: a replica whose
                # requests fail is retried elsewhere and starved of samples
                failing = err >= s.error_rate
                rep.bad, rep.good = (rep.bad + 1 if failing else 0), 0
                reason = self._reason(0.0, None, None, err, what) if failing else ""
                out[b] = Verdict(b, len(last), None, err, failing, False, reason, failures, lagging)
                continue
            reason = self._reason(med, peer, ref, err, what)
            rep.bad, rep.good = (rep.bad + 1, 0) if reason else (0, rep.good + 1)
            base = min(x[0] for x in (peer, ref, (med, 0.0)) if x is not None)
            rep.excess = rep.excess + med - base if reason else 0.0
            rep.relative = rep.relative + (med - base) / max(base, 1e-6) if reason else 0.0
            # slow long enough: ``consecutive`` checks, and the longer the smaller the
            # excess (a neighbour stalling a process briefly adds little); failing needs
            # no repeat: a clean replica does not fail requests
            evidence = rep.excess >= s.excess_evidence_s or rep.relative >= s.evidence_medians
            slow = rep.bad >= s.consecutive and evidence
            bad = slow or err >= s.error_rate
            good = rep.good >= s.consecutive
            out[b] = Verdict(b, len(last), med, err, bad, good, reason, failures, lagging)
        return out

    @staticmethod
    def _slow_admitted(b: str, ejected: set[str], verdicts: dict[str, Verdict]) -> bool:
        """Admitted, slow (its median or newest request) and not yet bad: probed in bursts
        to be judged soon; an ejected one stays at one probe per interval."""
        v = verdicts[b]
        return b not in ejected and not v.bad and (v.lagging or v.reason != "")

    def _probe(self, replicas: list[str], ejected: set[str], verdicts: dict[str, Verdict],
               now: float) -> list[str]:  # fmt: skip
        fresh = now - self.s.window_s / 2
        want = [
            b
            for b in replicas
            if verdicts[b].failures
            or self._slow_admitted(b, ejected, verdicts)
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
        failing = frozenset(b for b in bad if verdicts[b].error_rate >= self.s.error_rate)
        suspect = frozenset(
            b
            for b in probe
            if b not in failing
            and (verdicts[b].failures or self._slow_admitted(b, ejected, verdicts))
        )
        return Decision(eject, readmit, fallback, probe, slow_only, failing, suspect)
