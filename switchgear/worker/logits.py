"""Per-row logits processing before sampling: logit bias, presence/frequency penalties, the
structured-output constraint; and the log-probabilities reported with each token.
Runs on the engine thread only."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from switchgear.worker.generation import SamplingParams, TokenLogprob

if TYPE_CHECKING:
    from switchgear.worker.loading import ModelBundle


def process(logits: Any, params: SamplingParams, prompt: list[int], ids: list[int]) -> Any:
    """``logits`` (one row, float on the CPU) with bias, penalties and constraint applied."""
    import torch

    if params.logit_bias:
        index = torch.tensor([t for t, _ in params.logit_bias if t < logits.shape[-1]])
        bias = torch.tensor([b for t, b in params.logit_bias if t < logits.shape[-1]])
        logits = logits.index_add(0, index, bias)
    if ids and (params.presence_penalty or params.frequency_penalty):
        counts = collections.Counter(ids)
        index = torch.tensor(list(counts))
        freq = torch.tensor([float(c) for c in counts.values()])
        penalty = params.frequency_penalty * freq + params.presence_penalty
        logits = logits.index_add(0, index, -penalty)
    if params.constraint is not None:
        allowed = params.constraint.allowed(prompt + ids)
        if allowed:
            masked = torch.full_like(logits, float("-inf"))
            keep = torch.tensor(allowed, dtype=torch.long)
            masked[keep] = logits[keep]
            logits = masked
    return logits


def plain_greedy(params: SamplingParams) -> bool:
    """Greedy with nothing applied to the logits: the next token is their argmax."""
    return (
        params.temperature <= 1e-5
        and params.logprobs is None
        and params.constraint is None
        and not params.logit_bias
        and not params.presence_penalty
        and not params.frequency_penalty
    )


def token_logprob(bundle: ModelBundle, logits: Any, token: int, k: int) -> TokenLogprob:
    """The chosen token's log-probability under ``logits`` and the ``k`` most likely tokens."""
    import torch

    lp = torch.log_softmax(logits, dim=-1)
    top: tuple[tuple[str, float], ...] = ()
    if k > 0:
        values, index = torch.topk(lp, min(k, lp.shape[-1]))
        top = tuple(
            (piece(bundle, int(i)), float(v))
            for v, i in zip(values.tolist(), index.tolist(), strict=True)
        )
    return TokenLogprob(piece(bundle, token), float(lp[token]), top)


def piece(bundle: ModelBundle, token: int) -> str:
    return str(bundle.tokenizer.decode([token], skip_special_tokens=False))
