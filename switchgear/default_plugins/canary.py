"""Canary and shadow: try a replacement model on live traffic, safely.

For each ``router.canary`` rule, a stable share of the requests for ``model`` (chosen by a
hash of the request's ``user``, else its id, so one user stays on one side):

* ``mode: canary`` — is answered by ``candidate`` instead: ``select_model`` returns
  ``RouteDecision(candidate, "canary:<model>-><candidate>")``.
* ``mode: shadow`` — is answered by ``model`` as usual, and also mirrored to ``candidate``
  whose answer is recorded, never returned: ``select_model`` leaves a :class:`ShadowPlan`
  in ``ctx.attributes[SHADOW_KEY]``; after answering the client, the gateway runs
  :func:`mirror` in a background task, which sends the same request (not streamed) to the
  plan's model and records the outcome.

What is recorded (``GET /admin/canary``): requests on each side, latency of the primary and
the candidate, candidate errors, and how the outputs differ (exact matches, mean text
similarity by :class:`difflib.SequenceMatcher`, mean length ratio).

The plain ``select_model`` implementation runs before the trylast prompt router, so it sees
requests that name the model; traffic that reaches the model through a routing alias is not
split (the router chose it on purpose).
"""

from __future__ import annotations

import difflib
import hashlib
import statistics
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from switchgear import hookimpl
from switchgear.default_plugins.configured import Configured
from switchgear.proxy.shadow import SHADOW_KEY, ShadowPlan, ShadowResult
from switchgear.settings.router import CanaryRule
from switchgear.types import ModelInfo, RequestContext, RouteDecision

WINDOW = 1000  # samples kept per rule


@dataclass(slots=True)
class RuleStats:
    primary: int = 0
    candidate: int = 0
    errors: int = 0
    primary_latency: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    candidate_latency: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    similarity: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    length_ratio: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    exact: int = 0
    compared: int = 0

    def summary(self) -> dict[str, Any]:
        def med(xs: deque[float]) -> float | None:
            return round(statistics.median(xs), 4) if xs else None

        def mean(xs: deque[float]) -> float | None:
            return round(statistics.fmean(xs), 4) if xs else None

        return {
            "primary_requests": self.primary,
            "candidate_requests": self.candidate,
            "candidate_errors": self.errors,
            "primary_latency_p50_s": med(self.primary_latency),
            "candidate_latency_p50_s": med(self.candidate_latency),
            "compared": self.compared,
            "exact_matches": self.exact,
            "mean_similarity": mean(self.similarity),
            "mean_length_ratio": mean(self.length_ratio),
        }


def answer_text(body: Mapping[str, Any] | None) -> str:
    if not body:
        return ""
    choices = body.get("choices") or [{}]
    first = choices[0]
    return str((first.get("message") or {}).get("content") or first.get("text") or "")


def bucket(key: str, salt: str) -> float:
    """A stable number in [0, 1) for a request key."""
    digest = hashlib.blake2b(f"{salt}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Canary(Configured):
    def __init__(self, rules: list[CanaryRule] | None = None) -> None:
        self.use(rules or [])

    def configure(self, settings: Any) -> None:
        self.use(list(getattr(getattr(settings, "router", None), "canary", ()) or ()))

    def use(self, rules: list[CanaryRule]) -> None:
        self.rules = rules
        self.stats = {self.label(r): RuleStats() for r in rules}

    @staticmethod
    def label(rule: CanaryRule) -> str:
        return f"{rule.mode}:{rule.model}->{rule.candidate}"

    @hookimpl
    def select_model(
        self, ctx: RequestContext, models: Mapping[str, ModelInfo]
    ) -> RouteDecision | None:
        if not self.rules:
            return None
        key = str(ctx.body.get("user") or ctx.request_id)
        for rule in self.rules:
            if rule.model != ctx.model or rule.candidate not in models:
                continue
            label = self.label(rule)
            stats = self.stats[label]
            chosen = bucket(key, label) < rule.share
            if rule.mode == "canary":
                if chosen:
                    stats.candidate += 1
                    return RouteDecision(rule.candidate, label)
                stats.primary += 1
            elif chosen and SHADOW_KEY not in ctx.attributes:
                stats.primary += 1
                ctx.attributes[SHADOW_KEY] = ShadowPlan(
                    rule.candidate, rule.model, self._recorder(label)
                )
        return None

    def _recorder(self, label: str) -> Callable[[ShadowResult], None]:
        def record(result: ShadowResult) -> None:
            self.record(label, result)

        return record

    def record(self, label: str, result: ShadowResult) -> None:
        stats = self.stats[label]
        stats.candidate += 1
        if result.primary_latency_s is not None:
            stats.primary_latency.append(result.primary_latency_s)
        if result.error is not None or result.candidate is None:
            stats.errors += 1
            return
        if result.candidate_latency_s is not None:
            stats.candidate_latency.append(result.candidate_latency_s)
        if result.primary is None:  # a streamed primary: latency only
            return
        a, b = answer_text(result.primary), answer_text(result.candidate)
        stats.compared += 1
        stats.exact += a == b
        stats.similarity.append(difflib.SequenceMatcher(None, a, b, autojunk=False).ratio())
        stats.length_ratio.append(len(b) / len(a) if a else float(len(b) == 0))

    def snapshot(self) -> dict[str, Any]:
        return {label: s.summary() for label, s in self.stats.items()}

    @hookimpl
    def register_routes(self, register: Callable[[str, str, Callable[..., Any]], None]) -> None:
        register("GET", "/admin/canary", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        return web.json_response({"rules": self.snapshot()})


def make_plugin(settings: Any) -> Canary:
    canary = Canary()
    canary.bind(settings)
    return canary
