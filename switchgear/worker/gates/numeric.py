"""The numeric gates: is what was loaded what the checkpoint holds, and close to its reference?

* ``weights``: every checkpoint tensor, rounded to the dtype it was loaded in, equals the
  loaded parameter within ``weight_atol`` (NaN counts as different); names the first that
  does not.
* ``outputs``: max absolute logit difference on the probes against a reference (the same
  checkpoint unquantized in PyTorch, or ``model.reference``, e.g. the PyTorch weights of an
  ONNX export) within ``logit_tolerance``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from switchgear.worker.gates.base import GateResult, Subject, SwapContext, probe_ids
from switchgear.worker.loading import ModelBundle, checkpoint_files, iter_checkpoint

if TYPE_CHECKING:
    import torch


def weights_gate(current: Subject, candidate: Subject, ctx: SwapContext) -> GateResult:
    atol = ctx.gates.weight_atol
    bundle = candidate.bundle
    assert bundle is not None
    if bundle.fmt == "onnx":
        return GateResult(
            "weights", True, "not applicable to an ONNX export (checked by the outputs gate)"
        )
    model: ModelBundle | None = bundle
    if bundle.quantization is not None:
        model = ctx.reference(bundle)
        if model is None or model.path != bundle.path:
            return GateResult(
                "weights", True, "quantized: compared with its reference by the outputs gate"
            )
    assert model is not None
    params = model.model.state_dict()
    seen: set[str] = set()
    refused = _compare_checkpoint(params, checkpoint_files(bundle.path, bundle.fmt), atol, seen)
    if refused is not None:
        return refused
    count = len(seen)
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


def _compare_checkpoint(
    params: dict[str, torch.Tensor], files: list[Path], atol: float, seen: set[str]
) -> GateResult | None:
    """The refusal for the first checkpoint tensor that differs from its parameter; fills
    ``seen`` with the names compared."""
    for name, tensor in iter_checkpoint(files):
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
        # The loader casts the checkpoint to the serving dtype (fp16 on CUDA): compare with
        # the checkpoint rounded the same way, on the parameter's device, so that rounding is
        # not a difference and a changed value still is.
        ref = tensor.to(device=loaded.device, dtype=loaded.dtype)
        diff = float((loaded.detach() - ref).abs().max()) if tensor.numel() else 0.0
        if not diff <= atol:  # NaN fails too
            return GateResult(
                "weights",
                False,
                f"{name} differs from the checkpoint by {diff:.3g}",
                value=diff,
                limit=atol,
            )
    return None


def outputs_gate(current: Subject, candidate: Subject, ctx: SwapContext) -> GateResult:
    from switchgear.worker.decode import prompt_logits

    tol = ctx.gates.logit_tolerance
    bundle = candidate.bundle
    assert bundle is not None
    reference = ctx.reference(bundle)
    if reference is None:
        return GateResult(
            "outputs",
            True,
            "no PyTorch reference to compare against (set reference to the PyTorch weights)",
            limit=tol,
        )
    if reference is bundle:
        return GateResult(
            "outputs", True, "unquantized PyTorch model is its own reference", 0.0, tol
        )
    ids = probe_ids(bundle.tokenizer, ctx.gates.probes)
    diff = float((prompt_logits(bundle, ids) - prompt_logits(reference, ids)).abs().max())
    what = (
        f"max |logit difference| against {reference.path} "
        f"({reference.quantization or 'unquantized'}): {diff:.3g}"
    )
    return GateResult(
        "outputs",
        diff <= tol,
        f"{what} (limit {tol:g})",
        diff,
        tol,
        data={"reference": str(reference.path), "max_abs_logit_error": diff},
    )
