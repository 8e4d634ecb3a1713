"""The ``latency`` gate: is the candidate slower than the current model, with confidence?

Both models run forward passes over the same probes in interleaved rounds (current then
candidate, candidate then current, alternating), so a noisy neighbour, a frequency change
or the serving traffic slows both sides of a round alike. A round's figure is the time of
its forward passes over every probe. The statistic is the median of the per-round ratios
(candidate over current), and its confidence bounds are the sign test's order statistics:
distribution-free, so a neighbour's preemptions, which hit one side of a few rounds, cannot
make a same-size model look slower with confidence. (A bootstrap of the ratio of medians,
used before, refused a same-size model under a CPU-stress neighbour once in twenty.) Rounds are added, ``latency_repeats`` at a
time up to ``latency_max_rounds``, until the interval lies on one side of ``1 +
latency_tolerance``, or the candidate's median is not above the current model's. The gate
refuses only when the lower bound is above the limit: a candidate that is merely not proven
fast enough passes.

After a drain (``swap_mode: drain``) the two cannot be interleaved; the current model's
rounds measured before the drain are compared, unpaired, with the candidate's.
"""

from __future__ import annotations

import math
import time
from functools import partial
from typing import Any

from switchgear.worker.gates.base import GateResult, Subject, SwapContext, probe_ids
from switchgear.worker.loading import ModelBundle

#: A round repeats its probes until the current model's warm-up round would last this long,
#: so that one preemption by a neighbour (a scheduler slice is milliseconds) is a small part
#: of a round rather than all of it: a tiny model's single pass is under a millisecond.
MIN_ROUND_S = 0.02


def _round(bundle: ModelBundle, ids: list[list[int]], reps: int = 1) -> float:
    from switchgear.worker.decode import prompt_logits

    started = time.perf_counter()
    for _ in range(reps):
        for p in ids:
            prompt_logits(bundle, [p])
    return time.perf_counter() - started


def _reps(bundle: ModelBundle, ids: list[list[int]]) -> int:
    """Repeats per round for ``bundle`` (after its warm-up pass) to last ``MIN_ROUND_S``."""
    return max(1, min(1000, math.ceil(MIN_ROUND_S / max(_round(bundle, ids), 1e-6))))


def solo_rounds(bundle: ModelBundle, probes: list[str], rounds: int) -> list[float]:
    """Round times of one model alone (the current model, before a drain unloads it)."""
    ids = probe_ids(bundle.tokenizer, probes)
    _round(bundle, ids)
    reps = _reps(bundle, ids)
    return [_round(bundle, ids, reps) / reps for _ in range(rounds)]


def ab_rounds(
    a: ModelBundle, b: ModelBundle, probes: list[str], rounds: int, first: int = 0
) -> list[tuple[float, float]]:
    """(current, candidate) time per probe pass of each interleaved round; the order
    alternates per round, and both sides repeat their probes as often (see ``MIN_ROUND_S``)."""
    ia, ib = probe_ids(a.tokenizer, probes), probe_ids(b.tokenizer, probes)
    _round(a, ia), _round(b, ib)  # warm up
    reps = _reps(a, ia)
    out = []
    for r in range(first, first + rounds):
        if r % 2:
            tb = _round(b, ib, reps)
            ta = _round(a, ia, reps)
        else:
            ta = _round(a, ia, reps)
            tb = _round(b, ib, reps)
        out.append((ta / reps, tb / reps))
    return out


def _pairs(
    cand: ModelBundle, probes: list[str], n: int, first: int, cur: ModelBundle
) -> list[tuple[float, float]]:
    return ab_rounds(cur, cand, probes, n, first)


def paired_ratio_bound(
    a: list[float], b: list[float], *, confidence: float
) -> tuple[float, float, float]:
    """The median of the per-round ratios ``b/a`` and its distribution-free bounds (the sign
    test's order statistics, each one-sided at ``confidence``).

    Each round's two timings were taken back to back, so a ratio compares the models under
    the same load; a neighbour that preempts one side of a round moves one ratio, and the
    bound only passes ``x`` when all but a binomial tail of the rounds are above ``x``.
    With too few rounds for the confidence the bounds are 0 and infinity (nothing decided).
    """
    import statistics

    ratios = sorted(y / x for x, y in zip(a, b, strict=True))
    n, alpha = len(ratios), 1 - confidence
    # the largest k with P(Binomial(n, 1/2) <= k - 1) <= alpha: P(median < r[k-1]) <= alpha
    k, tail = 0, 0.0
    while k < n:
        tail += math.comb(n, k) / 2**n
        if tail > alpha:
            break
        k += 1
    median = statistics.median(ratios)
    if k == 0:
        return median, 0.0, math.inf
    return median, ratios[k - 1], ratios[n - k]


def ratio_bound(
    a: list[float], b: list[float], *, paired: bool, confidence: float, resamples: int
) -> tuple[float, float, float]:
    """median(b) / median(a) and its bootstrap bounds (each one-sided at ``confidence``)."""
    import numpy as np

    xa, xb = np.asarray(a), np.asarray(b)
    rng = np.random.default_rng(0)
    ia = rng.integers(0, len(xa), (resamples, len(xa)))
    ib = ia if paired else rng.integers(0, len(xb), (resamples, len(xb)))
    ratios = np.median(xb[ib], axis=1) / np.median(xa[ia], axis=1)
    alpha = 1 - confidence
    lo, hi = np.quantile(ratios, [alpha, 1 - alpha])
    return float(np.median(xb) / np.median(xa)), float(lo), float(hi)


def latency_gate(current: Subject, candidate: Subject, ctx: SwapContext) -> GateResult:
    g = ctx.gates
    limit = 1 + g.latency_tolerance
    cand = candidate.bundle
    assert cand is not None
    paired = current.bundle is not None
    if not paired and "latency" not in current.cache:
        return GateResult("latency", True, "no current model to compare against")
    a: list[float] = []
    b: list[float] = []
    # A refusal is final only over enough rounds for the bootstrap to mean something: four
    # rounds of which a neighbour hit three on the candidate's side once bounded a same-size
    # model at 1.36x. Passing may be decided sooner (the cost of a wrong pass is bounded by
    # the tolerance; a wrong refusal blocks a good model).
    min_refuse = min(g.latency_max_rounds, max(2 * g.latency_repeats, 12))
    while True:
        step = min(g.latency_repeats, g.latency_max_rounds - len(b))
        if paired:
            pairs = current.run(partial(_pairs, cand, g.probes, step, len(b)))
            a += [x for x, _ in pairs]
            b += [y for _, y in pairs]
        else:
            a = list(current.cache["latency"])
            b += solo_rounds(cand, g.probes, step)
        if paired:
            ratio, lo, hi = paired_ratio_bound(a, b, confidence=g.latency_confidence)
        else:
            ratio, lo, hi = ratio_bound(
                a, b, paired=False, confidence=g.latency_confidence, resamples=g.latency_resamples
            )
        # decided either way, or out of rounds; and a candidate whose median is not above the
        # current's is not measured further (more rounds would have to reverse the estimate)
        decided = (lo > limit and len(b) >= min_refuse) or hi <= limit or ratio <= 1.0
        if decided or len(b) >= g.latency_max_rounds:
            break
    refused = lo > limit
    conf = f"{g.latency_confidence:.0%}"
    verdict = (
        f"slower than +{g.latency_tolerance:.0%} with {conf} confidence"
        if refused
        else f"not slower than +{g.latency_tolerance:.0%} with {conf} confidence"
    )
    detail = (
        f"median round {_ms(b)} vs {_ms(a)}: ratio {ratio:.3f} "
        f"(bounds {lo:.3f}..{hi:.3f}, {len(b)} {'interleaved' if paired else 'unpaired'} rounds); "
        f"{verdict}"
    )
    data: dict[str, Any] = {
        "ratio": ratio,
        "lower": lo,
        "upper": hi,
        "confidence": g.latency_confidence,
        "rounds": len(b),
        "interleaved": paired,
        "current_median_s": _median(a),
        "candidate_median_s": _median(b),
    }
    return GateResult("latency", not refused, detail, lo - 1, g.latency_tolerance, data=data)


def _median(xs: list[float]) -> float:
    import statistics

    return statistics.median(xs)


def _ms(xs: list[float]) -> str:
    return f"{_median(xs) * 1000:.2f} ms"
