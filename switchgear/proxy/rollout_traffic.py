"""Traffic during a rollout: the candidate's share of its model, and the verdict on it.

:class:`TrafficShare` is an ``order_backends`` plugin (``tryfirst``): for a model under
rollout it puts the candidate first in ``share`` of the requests and last otherwise; the
other replicas keep the order the remaining ``order_backends`` plugins give them. Models
without a rollout are left to the balancer (it returns None).

:class:`Window` keeps the observations of one step (latency, TTFT, errors per backend) and
:func:`verdict` compares the candidate with its peers: an error-rate gap above
``error_gap`` or a median latency (or TTFT) above ``latency_ratio`` x the peers', each once
both sides have ``min_samples`` observations.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from switchgear.plugins.hookspecs import hookimpl
from switchgear.types import Backend, Observation, RequestContext


class TrafficShare:
    """Per model: (candidate backend id, share in [0, 1]) while a step runs."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.shares: dict[str, tuple[str, float]] = {}

    @hookimpl(tryfirst=True)
    def order_backends(
        self, ctx: RequestContext, backends: Sequence[Backend], stats: Any
    ) -> list[Backend] | None:
        plan = self.shares.get(ctx.model)
        if plan is None:
            return None
        cand = [b for b in backends if b.id == plan[0]]
        rest = [b for b in backends if b.id != plan[0]]
        if not cand:
            return None
        if len(rest) > 1:
            others = self.pm.subset_hook_caller("order_backends", remove_plugins=[self])
            ordered = others(ctx=ctx, backends=rest, stats=stats)
            rest = list(ordered) if ordered else rest
        return cand + rest if random.random() < plan[1] else rest + cand


@dataclass(slots=True)
class Series:
    latency: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def n(self) -> int:
        return len(self.latency) + self.errors

    def error_rate(self) -> float:
        return self.errors / self.n if self.n else 0.0


@dataclass(frozen=True, slots=True)
class Rule:
    min_samples: int = 8
    latency_ratio: float = 2.0
    error_gap: float = 0.2


@dataclass(slots=True)
class Window:
    """Observations of one model since a step began: the candidate and its peers."""

    model: str
    candidate: str
    peers: frozenset[str]
    cand: Series = field(default_factory=Series)
    peer: Series = field(default_factory=Series)

    def observe(self, obs: Observation) -> None:
        if obs.model != self.model:
            return
        if obs.backend_id == self.candidate:
            series = self.cand
        elif obs.backend_id in self.peers:
            series = self.peer
        else:
            return
        if obs.error is not None or obs.status >= 500:
            series.errors += 1
            return
        if obs.status >= 400:  # a client error judges nobody
            return
        series.latency.append(obs.latency_s)
        if obs.ttft_s is not None:
            series.ttft.append(obs.ttft_s)

    def figures(self) -> dict[str, Any]:
        def med(xs: list[float]) -> float | None:
            return round(statistics.median(xs), 5) if xs else None

        return {
            "candidate_requests": self.cand.n,
            "peer_requests": self.peer.n,
            "candidate_error_rate": round(self.cand.error_rate(), 4),
            "peer_error_rate": round(self.peer.error_rate(), 4),
            "candidate_latency_p50_s": med(self.cand.latency),
            "peer_latency_p50_s": med(self.peer.latency),
            "candidate_ttft_p50_s": med(self.cand.ttft),
            "peer_ttft_p50_s": med(self.peer.ttft),
        }


def _slower(cand: list[float], peer: list[float], rule: Rule) -> float | None:
    """The candidate's median over the peers' when it exceeds the rule's ratio."""
    if len(cand) < rule.min_samples or len(peer) < rule.min_samples:
        return None
    ratio = statistics.median(cand) / max(statistics.median(peer), 1e-6)
    return ratio if ratio > rule.latency_ratio else None


def verdict(w: Window, rule: Rule) -> str | None:
    """Why the candidate must be rolled back, or None while it holds up."""
    if w.cand.n >= rule.min_samples and w.peer.n >= rule.min_samples:
        gap = w.cand.error_rate() - w.peer.error_rate()
        if gap > rule.error_gap:
            return f"error-rate gap {gap:.2f} > {rule.error_gap:g} over {w.cand.n} requests"
    if (r := _slower(w.cand.latency, w.peer.latency, rule)) is not None:
        return f"median latency {r:.2f}x the peers' (> {rule.latency_ratio:g}x)"
    if (r := _slower(w.cand.ttft, w.peer.ttft, rule)) is not None:
        return f"median TTFT {r:.2f}x the peers' (> {rule.latency_ratio:g}x)"
    return None
