"""The integrity gates, which no ``force`` overrides (see ``base.INTEGRITY``).

1. ``finite_weights``: every tensor of the checkpoint on disk (safetensors, bin, pt, or the
   initializers of an ONNX graph) and every floating-point tensor of the loaded model is
   finite. A refusal names the first tensor with a NaN or an infinity.
2. ``finite_logits``: the last-position logits of every probe are finite (names the probe).
3. ``generation``: greedy generation on every probe is not degenerate: not empty, and not one
   token repeated up to ``generation_tokens`` unless the current model does the same on that
   probe (a random or tiny model may legitimately repeat itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from switchgear.worker.gates.base import GateResult, Subject, SwapContext, probe_ids, short
from switchgear.worker.loading import ModelBundle, checkpoint_files, iter_checkpoint


def _onnx_initializers(files: list[Path]) -> Iterator[tuple[str, Any]]:
    import onnx
    import torch
    from onnx import numpy_helper

    for f in files:
        graph = onnx.load(str(f), load_external_data=True).graph
        for init in graph.initializer:
            yield init.name, torch.from_numpy(numpy_helper.to_array(init).copy())


def _loaded_tensors(bundle: ModelBundle) -> Iterator[tuple[str, Any]]:
    import torch

    if not bundle.is_torch:
        return
    for name, t in bundle.model.state_dict().items():
        # quantized models hold packed or subclassed tensors; their source was checked on disk
        if type(t) in (torch.Tensor, torch.nn.Parameter) and t.is_floating_point():
            yield name, t


def _non_finite(t: Any) -> str | None:
    import torch

    if not t.is_floating_point() or not t.numel():
        return None
    finite = torch.isfinite(t)
    if bool(finite.all()):
        return None
    nan = int(torch.isnan(t).sum())
    inf = int((~finite).sum()) - nan
    parts = [f"{nan} NaN" if nan else "", f"{inf} infinite" if inf else ""]
    return " and ".join(p for p in parts if p) + f" of {t.numel()} values"


def finite_weights_gate(current: Subject, candidate: Subject, ctx: SwapContext) -> GateResult:
    bundle = candidate.bundle
    assert bundle is not None
    fmt = "onnx" if bundle.fmt == "onnx" else bundle.fmt
    files = checkpoint_files(bundle.path, fmt)
    stored = _onnx_initializers(files) if fmt == "onnx" else iter_checkpoint(files)
    count = 0
    for where, tensors in (("checkpoint", stored), ("loaded model", _loaded_tensors(bundle))):
        for name, t in tensors:
            count += 1
            bad = _non_finite(t)
            if bad:
                return GateResult(
                    "finite_weights",
                    False,
                    f"{name} ({where}) has {bad}",
                    data={"tensor": name, "where": where},
                )
    return GateResult("finite_weights", True, f"{count} tensors are finite")


def finite_logits_gate(current: Subject, candidate: Subject, ctx: SwapContext) -> GateResult:
    import torch

    from switchgear.worker.decode import prompt_logits

    bundle = candidate.bundle
    assert bundle is not None
    probes = ctx.gates.probes
    for probe, ids in zip(probes, probe_ids(bundle.tokenizer, probes), strict=True):
        logits = prompt_logits(bundle, [ids])
        if not bool(torch.isfinite(logits).all()):
            return GateResult(
                "finite_logits",
                False,
                f"probe {short(probe)!r}: logits are not finite",
                data={"probe": probe},
            )
    return GateResult("finite_logits", True, f"logits of {len(probes)} probes are finite")


def greedy(bundle: ModelBundle, prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
    """Greedy continuation ids of each prompt (up to an end-of-sequence token), one at a time."""
    import torch

    from switchgear.worker.decode import eos_ids, forward, left_pad, positions_for

    eos = eos_ids(bundle)
    out = []
    for prompt in prompts:
        ids, mask = left_pad(bundle, [prompt])
        positions = positions_for(mask)
        res = forward(bundle, ids, mask, positions)
        tokens: list[int] = []
        for _ in range(max(1, min(max_tokens, bundle.context_length - len(prompt)))):
            token = int(torch.argmax(res.logits[0, -1].float()))
            if token in eos:
                break
            tokens.append(token)
            mask = torch.cat([mask, torch.ones((1, 1), dtype=mask.dtype)], dim=1)
            positions = positions[:, -1:] + 1
            step = torch.tensor([[token]], dtype=torch.long)
            res = forward(bundle, step, mask, positions, res.past_key_values)
        out.append(tokens)
    return out


def probe_generations(subject: Subject, ctx: SwapContext) -> list[list[int]] | None:
    """Greedy ids of the probes (cached on the subject; None when the model is gone)."""
    if "generations" not in subject.cache:
        if subject.bundle is None:
            return None
        g = ctx.gates
        subject.cache["generations"] = subject.run(
            lambda b: greedy(b, probe_ids(b.tokenizer, g.probes), g.generation_tokens)
        )
    return cast("list[list[int]] | None", subject.cache["generations"])


def _stuck(tokens: list[int], limit: int) -> bool:
    return len(tokens) >= limit and len(set(tokens)) == 1


def generation_gate(current: Subject, candidate: Subject, ctx: SwapContext) -> GateResult:
    limit = ctx.gates.generation_tokens
    new = probe_generations(candidate, ctx) or []
    old = probe_generations(current, ctx)
    tok = candidate.tokenizer
    for i, (probe, tokens) in enumerate(zip(ctx.gates.probes, new, strict=True)):
        text = tok.decode(tokens, skip_special_tokens=True)
        if not text:
            return GateResult(
                "generation",
                False,
                f"probe {short(probe)!r}: the greedy answer is empty",
                data={"probe": probe},
            )
        if _stuck(tokens, limit) and not (old is not None and _stuck(old[i], limit)):
            return GateResult(
                "generation",
                False,
                f"probe {short(probe)!r}: one token ({short(tok.decode(tokens[:1]), 12)!r}) repeated "
                f"{len(tokens)} times, which the current model does not do",
                data={"probe": probe, "token": tokens[0]},
            )
    return GateResult(
        "generation",
        True,
        f"greedy answers to {len(new)} probes are not empty and not stuck on one token",
    )
