"""The built-in hot-swap gates, registered by the worker as a ``verify_swap`` plugin.

In the order they run (docs/worker.md has what each allows and how to force it):

1. integrity, never forcible (``integrity.py``): ``finite_weights``, ``finite_logits``,
   ``generation``. When the weights or logits are not finite the rest are not run (their
   figures would be NaN); a degenerate generation still gets the full report.
2. compatibility (``compat.py``): ``architecture``, ``tokenizer``.
3. numeric (``numeric.py``): ``weights``, ``outputs``.
4. ``latency`` (``latency.py``) and ``eval`` (``evals.py``).

Each gate returns a :class:`GateResult`; third-party plugins add gates with the same hook.
``force`` (``True`` or a list of gate names) turns a failure of a forcible gate, built-in or
third-party, into a pass marked ``forced``; it is applied once, in :func:`collect`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from switchgear.plugins.hookspecs import hookimpl
from switchgear.worker.gates.base import (
    INTEGRITY,
    GateResult,
    Subject,
    SwapContext,
    parse_force,
    probe_ids,
)
from switchgear.worker.gates.compat import architecture_gate, describe, tokenizer_gate
from switchgear.worker.gates.evals import eval_gate
from switchgear.worker.gates.integrity import (
    finite_logits_gate,
    finite_weights_gate,
    generation_gate,
    greedy,
    probe_generations,
)
from switchgear.worker.gates.latency import latency_gate, solo_rounds
from switchgear.worker.gates.numeric import outputs_gate, weights_gate

__all__ = [
    "INTEGRITY",
    "GateResult",
    "Subject",
    "SwapContext",
    "collect",
    "describe",
    "greedy",
    "parse_force",
    "probe_generations",
    "probe_ids",
    "solo_rounds",
    "verify_swap",
]

log = logging.getLogger("switchgear.worker.gates")

INTEGRITY_GATES = (finite_weights_gate, finite_logits_gate, generation_gate)
GATES = (
    architecture_gate,
    tokenizer_gate,
    weights_gate,
    outputs_gate,
    latency_gate,
    eval_gate,
)


def _run(gate: Any, current: Subject, candidate: Subject, ctx: SwapContext) -> GateResult:
    started = time.perf_counter()
    try:
        res: GateResult = gate(current, candidate, ctx)
    except Exception as exc:  # a gate that cannot run fails closed
        log.exception("gate %s failed to run", gate.__name__)
        res = GateResult(gate.__name__.removesuffix("_gate"), False, f"error: {exc}")
    return dataclasses.replace(res, seconds=round(time.perf_counter() - started, 4))


@hookimpl(trylast=True)
def verify_swap(current: Any, candidate: Any, settings: Any) -> list[GateResult]:
    results = []
    for gate in INTEGRITY_GATES:
        results.append(_run(gate, current, candidate, settings))
        if not results[-1].passed and results[-1].gate != "generation":
            return results
    if getattr(settings, "scope", "all") == "integrity":
        return results
    for gate in GATES:
        results.append(_run(gate, current, candidate, settings))
    return results


def collect(results: list[Any], ctx: SwapContext | None = None) -> list[GateResult]:
    """Flatten ``verify_swap`` results (single results or lists) and apply ``ctx.force``."""
    out: list[GateResult] = []
    for r in results:
        for item in r if isinstance(r, list | tuple) else [r]:
            res = item if isinstance(item, GateResult) else GateResult(**_fields(item))
            if not isinstance(res.forced, bool):  # e.g. ``forced=ctx.force`` from a plugin
                res = dataclasses.replace(res, forced=bool(res.forced))
            if not res.passed and not res.forced and ctx is not None and ctx.allows(res.gate):
                res = dataclasses.replace(res, forced=True)
            if res.forced and res.gate in INTEGRITY:
                res = dataclasses.replace(res, forced=False)
            out.append(res)
    return out


def _fields(item: Any) -> dict[str, Any]:
    data = item if isinstance(item, dict) else dataclasses.asdict(item)
    names = {f.name for f in dataclasses.fields(GateResult)}
    return {"detail": "", **{k: v for k, v in data.items() if k in names}}
