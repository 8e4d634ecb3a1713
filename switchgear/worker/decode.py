"""One batch of generation: left-padded prefill, step-wise decode with the KV cache, per-row
sampling, stop sequences and pruning of finished rows. Runs on the engine thread only."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from switchgear.worker.generation import GenEvent, IncrementalText, TokenLogprob, new_generator
from switchgear.worker.logits import plain_greedy, process, token_logprob

if TYPE_CHECKING:
    from switchgear.worker.engine import _Request
    from switchgear.worker.generation import EngineMetrics
    from switchgear.worker.loading import ModelBundle


@dataclass(eq=False)
class _Row:
    req: _Request
    generator: Any
    limit: int
    ids: list[int] = field(default_factory=list)
    sent: int = 0
    first_at: float | None = None
    finish: str | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    text: IncrementalText = field(default_factory=IncrementalText)


def eos_ids(bundle: ModelBundle) -> set[int]:
    ids: set[int] = set()
    gen = getattr(bundle.model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(int(i) for i in eos)
    if bundle.tokenizer.eos_token_id is not None:
        ids.add(int(bundle.tokenizer.eos_token_id))
    return ids


def left_pad(bundle: ModelBundle, prompts: list[list[int]]) -> tuple[Any, Any]:
    import torch

    pad = bundle.tokenizer.pad_token_id or 0
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p) :] = 1
    return ids, mask


def forward(bundle: ModelBundle, ids: Any, mask: Any, positions: Any, past: Any = None) -> Any:
    import torch

    dev = bundle.device
    with torch.no_grad():
        return bundle.model(
            input_ids=ids.to(dev),
            attention_mask=mask.to(dev),
            position_ids=positions.to(dev),
            past_key_values=past,
            use_cache=True,
        )


def positions_for(mask: Any) -> Any:
    return (mask.cumsum(-1) - 1).clamp(min=0)


def prune_cache(past: Any, keep: Any) -> Any:
    if hasattr(past, "batch_select_indices"):
        past.batch_select_indices(keep.to(_cache_device(past)))
        return past
    return tuple(tuple(t[keep.to(t.device)] for t in layer) for layer in past)


def _cache_device(past: Any) -> Any:
    try:
        return past.layers[0].keys.device
    except (AttributeError, IndexError):
        import torch

        return torch.device("cpu")


def sample(logits: Any, row: _Row, bundle: ModelBundle | None = None) -> int:
    """The next token of ``row``; with ``logprobs`` asked, its log-probability is recorded."""
    p = row.req.params
    logits = process(logits.float().cpu(), p, row.req.prompt_ids, row.ids)
    token = _draw(logits, row)
    if p.logprobs is not None and bundle is not None:
        row.logprobs.append(token_logprob(bundle, logits, token, p.logprobs))
    return token


def _draw(logits: Any, row: _Row) -> int:
    import torch

    p = row.req.params
    if p.temperature <= 1e-5:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / p.temperature, dim=-1)
    if p.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        cum = torch.cumsum(sorted_p, dim=-1)
        drop = cum - sorted_p > p.top_p
        sorted_p[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
    return int(torch.multinomial(probs, 1, generator=row.generator))


def _advance(bundle: ModelBundle, row: _Row, token: int, eos: set[int]) -> GenEvent | None:
    """Record one token; the text delta to send (or None), with stop handling."""
    p = row.req.params
    if token in eos:
        row.finish = "stop"
        del row.logprobs[-1:]  # the end token is not part of the answer
    else:
        row.ids.append(token)
        if len(row.ids) >= row.limit:
            row.finish = "length"
    text = row.text.update(bundle.tokenizer, row.ids)
    if p.stop:
        hits = [i for i in (text.find(s) for s in p.stop if s) if i >= 0]
        if hits:
            text, row.finish = text[: min(hits)], "stop"
    end = len(text)
    if row.finish is None:
        if text.endswith("\ufffd"):
            end = len(text.rstrip("\ufffd"))
        if p.stop:
            end = min(end, len(text) - max(len(s) for s in p.stop) + 1)
    delta = text[row.sent : max(end, row.sent)] if row.finish is None else text[row.sent :]
    row.sent += len(delta)
    if row.finish is None and not delta:
        return None
    lps, row.logprobs = tuple(row.logprobs), []
    if row.finish is not None:
        return GenEvent(delta, row.finish, len(row.req.prompt_ids), len(row.ids), lps)
    return GenEvent(delta, logprobs=lps)


@dataclass(eq=False)
class _Group:
    """Rows decoded together: their KV cache, attention mask and last positions."""

    rows: list[_Row]
    past: Any
    mask: Any
    positions: Any
    logits: Any
    next_tokens: list[int] = field(default_factory=list)


def _prefill(bundle: ModelBundle, reqs: list[_Request]) -> _Group:
    ctx = bundle.context_length
    rows = [
        _Row(
            r,
            new_generator(r.params.seed),
            max(1, min(r.params.max_tokens, ctx - len(r.prompt_ids))),
        )
        for r in reqs
    ]
    ids, mask = left_pad(bundle, [r.prompt_ids for r in reqs])
    positions = positions_for(mask)
    out = forward(bundle, ids, mask, positions)
    return _Group(rows, out.past_key_values, mask, positions[:, -1:], out.logits[:, -1, :])


def _sample_group(bundle: ModelBundle, group: _Group, eos: set[int], metrics: EngineMetrics) -> int:
    """Sample one token per row, send deltas, then drop finished rows; returns tokens sampled."""
    import torch

    tokens, group.next_tokens = 0, []
    # One device-to-host copy per step, not one per row: only the chosen tokens when every
    # row decodes greedily with nothing to apply, else the logits of all rows.
    if all(plain_greedy(row.req.params) for row in group.rows):
        picked: list[int] | None = group.logits.argmax(-1).tolist()
    else:
        picked, host = None, group.logits.float().cpu()
    for i, row in enumerate(group.rows):
        if row.req.cancelled.is_set():
            row.finish = "cancelled"
            metrics.observe_cancel()
            group.next_tokens.append(0)
            continue
        token = picked[i] if picked is not None else sample(host[i], row, bundle)
        group.next_tokens.append(token)
        tokens += 1
        if row.first_at is None:
            row.first_at = time.perf_counter()
            metrics.observe_ttft(row.first_at - row.req.created)
        event = _advance(bundle, row, token, eos)
        if event is not None:
            row.req.emit(event)
    live = [i for i, row in enumerate(group.rows) if row.finish is None]
    if not live:
        group.rows = []
    elif len(live) < len(group.rows):
        keep = torch.tensor(live, dtype=torch.long)
        group.past = prune_cache(group.past, keep)
        group.mask, group.positions = group.mask[keep], group.positions[keep]
        group.rows = [group.rows[i] for i in live]
        group.next_tokens = [group.next_tokens[i] for i in live]
    return tokens


def _pad_left(t: Any, n: int) -> Any:
    import torch

    if n == 0:
        return t
    return torch.cat([t.new_zeros((*t.shape[:-2], n, t.shape[-1])), t], dim=-2)


def _merge(a: _Group, b: _Group) -> _Group:
    """One group from two: the shorter history is left-padded (masked) to the longer one."""
    import torch

    la, lb = a.mask.shape[1], b.mask.shape[1]
    width = max(la, lb)
    if hasattr(a.past, "layers"):
        for x, y in zip(a.past.layers, b.past.layers, strict=True):
            x.keys = torch.cat(
                [_pad_left(x.keys, width - la), _pad_left(y.keys, width - lb)], dim=0
            )
            x.values = torch.cat(
                [_pad_left(x.values, width - la), _pad_left(y.values, width - lb)], dim=0
            )
        past = a.past
    else:
        past = tuple(
            tuple(
                torch.cat([_pad_left(u, width - la), _pad_left(v, width - lb)], dim=0)
                for u, v in zip(x, y, strict=True)
            )
            for x, y in zip(a.past, b.past, strict=True)
        )
    mask = torch.cat(
        [
            _pad_left(a.mask.unsqueeze(-1), width - la).squeeze(-1),
            _pad_left(b.mask.unsqueeze(-1), width - lb).squeeze(-1),
        ],
        dim=0,
    )
    return _Group(
        a.rows + b.rows,
        past,
        mask,
        torch.cat([a.positions, b.positions]),
        None,
        a.next_tokens + b.next_tokens,
    )


def run_batch(
    bundle: ModelBundle,
    reqs: list[_Request],
    metrics: EngineMetrics,
    admit: Callable[[int], list[_Request]] | None = None,
    capacity: int = 1,
) -> None:
    """Decode ``reqs`` to the end. ``admit(n)`` hands over up to n waiting requests, which join
    the batch at a step boundary (continuous batching); they are appended to ``reqs``."""
    import torch

    started = time.perf_counter()
    eos = eos_ids(bundle)
    group = _prefill(bundle, reqs)
    tokens = 0
    while True:
        tokens += _sample_group(bundle, group, eos, metrics)
        room = capacity - len(group.rows)
        fresh = admit(room) if admit is not None and room > 0 else []
        if fresh:
            reqs.extend(fresh)
            joined = _prefill(bundle, fresh)
            tokens += _sample_group(bundle, joined, eos, metrics)
            if joined.rows:
                group = _merge(group, joined) if group.rows else joined
            metrics.observe_batch(len(group.rows))
        if not group.rows:
            break
        group.mask = torch.cat(
            [group.mask, torch.ones((len(group.rows), 1), dtype=group.mask.dtype)], dim=1
        )
        group.positions = group.positions + 1
        step = torch.tensor(group.next_tokens, dtype=torch.long).unsqueeze(1)
        out = forward(bundle, step, group.mask, group.positions, group.past)
        group.past, group.logits = out.past_key_values, out.logits[:, -1, :]
    metrics.add_tokens(tokens, time.perf_counter() - started)


def prompt_logits(bundle: ModelBundle, prompts: list[list[int]]) -> Any:
    """Last-position logits of each prompt (for gates and the ONNX-vs-PyTorch check)."""
    import torch

    rows = []
    for p in prompts:
        ids, mask = left_pad(bundle, [p])
        rows.append(forward(bundle, ids, mask, positions_for(mask)).logits[0].float().cpu())
    return torch.cat(rows, dim=0)


def embed(bundle: ModelBundle, prompts: list[list[int]]) -> list[list[float]]:
    """Mean-pooled last hidden states (padding excluded)."""
    import torch

    if not bundle.is_torch:
        raise ValueError(
            f"embeddings need a PyTorch model; this one is served through {bundle.quantization}"
        )
    ids, mask = left_pad(bundle, prompts)
    with torch.no_grad():
        out = bundle.model(
            input_ids=ids.to(bundle.device),
            attention_mask=mask.to(bundle.device),
            position_ids=positions_for(mask).to(bundle.device),
            output_hidden_states=True,
        )
    hidden = out.hidden_states[-1].float().cpu()
    m = mask.unsqueeze(-1).float()
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    vectors: list[list[float]] = pooled.tolist()
    return vectors
