"""The built-in hot-swap gates, registered by the worker as a ``verify_swap`` plugin.

1. ``tokenizer``: vocabulary and special tokens equal (a mismatch is refused unless forced).
2. ``weights``: every checkpoint tensor equals the loaded parameter within ``weight_atol``.
3. ``outputs``: max absolute logit difference on the probe set against a reference (the same
   checkpoint unquantized in PyTorch, or ``spec.reference``) within ``logit_tolerance``.
4. ``latency``: the candidate's p50 on the probe set at most ``latency_tolerance`` above
   the current model's.

Each gate returns a :class:`GateResult`; third-party plugins add gates with the same hook.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from switchgear.plugins.hookspecs import hookimpl
from switchgear.settings.worker import GateSettings
from switchgear.worker.loading import ModelBundle, checkpoint_files, iter_checkpoint

log = logging.getLogger("switchgear.worker.gates")


@dataclass(frozen=True, slots=True)
class GateResult:
    gate: str
    passed: bool
    detail: str
    value: float | None = None
    limit: float | None = None
    forced: bool = False


@dataclass(slots=True)
class Subject:
    """One side of a swap: the current model (``bundle`` may be gone after a drain) or the candidate."""

    name: str
    tokenizer: Any
    bundle: ModelBundle | None
    latency_p50: float | None = None


@dataclass(slots=True)
class SwapContext:
    """The ``settings`` argument of ``verify_swap``: tolerances, force, and a shared cache."""

    gates: GateSettings
    force: bool = False
    pm: Any = None
    cache: dict[str, Any] = field(default_factory=dict)

    def reference(self, candidate: ModelBundle) -> ModelBundle | None:
        """The candidate's unquantized PyTorch twin (loaded once per swap), or None."""
        if "reference" not in self.cache:
            self.cache["reference"] = _load_reference(candidate, self.pm)
        return self.cache["reference"]


def _load_reference(candidate: ModelBundle, pm: Any) -> ModelBundle | None:
    from pathlib import Path

    from switchgear.worker.loading import detect_format, load_pretrained

    if candidate.quantization is None:
        return candidate
    path = candidate.spec.reference or candidate.spec.model_name_or_path
    fmt, _ = detect_format(Path(path))
    if fmt == "onnx":
        return None
    spec = candidate.spec.model_copy(
        update={"model_name_or_path": path, "quantization": None, "dtype": "fp32"}
    )
    return load_pretrained(spec)


def probe_ids(tokenizer: Any, probes: list[str]) -> list[list[int]]:
    return [tokenizer(p)["input_ids"] for p in probes]


def measure_latency(bundle: ModelBundle, probes: list[str], repeats: int) -> float:
    """p50 seconds of a forward pass over each probe prompt."""
    from switchgear.worker.decode import prompt_logits

    ids = probe_ids(bundle.tokenizer, probes)
    prompt_logits(bundle, ids[:1])  # warm up
    times = []
    for _ in range(repeats):
        for p in ids:
            t = time.perf_counter()
            prompt_logits(bundle, [p])
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def tokenizer_gate(current: Subject, candidate: Subject, ctx: SwapContext) -> GateResult:
    a, b = current.tokenizer, candidate.tokenizer
    va, vb = a.get_vocab(), b.get_vocab()
    problems = []
    if va != vb:
        diff = len(set(va.items()) ^ set(vb.items()))
        problems.append(
            f"vocabulary differs ({len(va)} vs {len(vb)} tokens, {diff} entries differ)"
        )
    if a.special_tokens_map != b.special_tokens_map:
        problems.append(f"special tokens differ ({a.special_tokens_map} vs {b.special_tokens_map})")
    if not problems:
        return GateResult("tokenizer", True, f"{len(va)} tokens and special tokens match")
    return GateResult("tokenizer", False, "; ".join(problems), forced=ctx.force)


def weights_gate(current: Subject, candidate: Subject, ctx: SwapContext) -> GateResult:
    atol = ctx.gates.weight_atol
    bundle = candidate.bundle
    assert bundle is not None
    if bundle.fmt == "onnx":
        return GateResult(
            "weights", True, "not applicable to an ONNX export (checked by the outputs gate)"
        )
    model = ctx.reference(bundle)
    if model is None:
        return GateResult("weights", True, "no PyTorch weights to compare")
    params = model.model.state_dict()
    files = checkpoint_files(bundle.path, bundle.fmt)
    seen: set[str] = set()
    count = 0
    for name, tensor in iter_checkpoint(files):
        count += 1
        loaded = params.get(name)
        if loaded is None:
            return GateResult(
                "weights", False, f"checkpoint tensor {name} has no matching parameter", limit=atol
            )
        seen.add(name)
        if tuple(loaded.shape) != tuple(tensor.shape):
            return GateResult(
                "weights",
                False,
                f"{name}: shape {tuple(loaded.shape)} != checkpoint {tuple(tensor.shape)}",
                limit=atol,
            )
        diff = (
            float((loaded.detach().float().cpu() - tensor.float()).abs().max())
            if tensor.numel()
            else 0.0
        )
        if diff > atol:
            return GateResult(
                "weights",
                False,
                f"{name} differs from the checkpoint by {diff:.3g}",
                value=diff,
                limit=atol,
            )
    stored = {params[n].data_ptr() for n in seen}
    missing = [
        n for n, t in model.model.named_parameters() if n not in seen and t.data_ptr() not in stored
    ]
    if missing:
        return GateResult(
            "weights",
            False,
            f"parameter {missing[0]} is not in the checkpoint ({len(missing)} missing)",
            limit=atol,
        )
    return GateResult(
        "weights", True, f"{count} tensors equal within {atol:g}", value=0.0, limit=atol
    )


def outputs_gate(current: Subject, candidate: Subject, ctx: SwapContext) -> GateResult:
    from switchgear.worker.decode import prompt_logits

    tol = ctx.gates.logit_tolerance
    bundle = candidate.bundle
    assert bundle is not None
    reference = ctx.reference(bundle)
    if reference is None:
        return GateResult("outputs", True, "no reference model to compare against", limit=tol)
    if reference is bundle:
        return GateResult(
            "outputs", True, "unquantized PyTorch model is its own reference", 0.0, tol
        )
    ids = probe_ids(bundle.tokenizer, ctx.gates.probes)
    diff = float((prompt_logits(bundle, ids) - prompt_logits(reference, ids)).abs().max())
    what = f"max |logit difference| against {reference.quantization or 'unquantized'} reference: {diff:.3g}"
    return GateResult("outputs", diff <= tol, f"{what} (limit {tol:g})", diff, tol)


def latency_gate(current: Subject, candidate: Subject, ctx: SwapContext) -> GateResult:
    g = ctx.gates
    if current.latency_p50 is None and current.bundle is not None:
        current.latency_p50 = measure_latency(current.bundle, g.probes, g.latency_repeats)
    if candidate.latency_p50 is None and candidate.bundle is not None:
        candidate.latency_p50 = measure_latency(candidate.bundle, g.probes, g.latency_repeats)
    if not current.latency_p50 or candidate.latency_p50 is None:
        return GateResult("latency", True, "no current model to compare against")
    ratio = candidate.latency_p50 / current.latency_p50 - 1
    detail = (
        f"p50 {candidate.latency_p50 * 1000:.2f} ms vs {current.latency_p50 * 1000:.2f} ms "
        f"({ratio:+.0%}, limit +{g.latency_tolerance:.0%})"
    )
    return GateResult("latency", ratio <= g.latency_tolerance, detail, ratio, g.latency_tolerance)


GATES = (tokenizer_gate, weights_gate, outputs_gate, latency_gate)


@hookimpl(trylast=True)
def verify_swap(current: Any, candidate: Any, settings: Any) -> list[GateResult]:
    results = []
    for gate in GATES:
        try:
            results.append(gate(current, candidate, settings))
        except Exception as exc:  # a gate that cannot run fails closed
            log.exception("gate %s failed to run", gate.__name__)
            results.append(GateResult(gate.__name__.removesuffix("_gate"), False, f"error: {exc}"))
    return results


def collect(results: list[Any]) -> list[GateResult]:
    """Flatten ``verify_swap`` results (single results or lists) into GateResults."""
    out: list[GateResult] = []
    for r in results:
        for item in r if isinstance(r, list | tuple) else [r]:
            out.append(
                item if isinstance(item, GateResult) else GateResult(**dataclasses.asdict(item))
            )
    return out
