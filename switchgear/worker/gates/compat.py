"""The compatibility gates: does the candidate take the same input as the current model?

* ``architecture``: a config diff (model type, hidden size, layers, heads, vocabulary size,
  maximum positions, chat template). Any difference refuses the swap unless forced.
* ``tokenizer``: vocabulary, special tokens, how each probe tokenizes, and how the chat
  template renders each probe as a user turn. Any difference refuses unless forced.
"""

from __future__ import annotations

import hashlib
from typing import Any

from switchgear.worker.gates.base import GateResult, Subject, SwapContext, probe_ids, short

#: (report name, config attribute); transformers' attribute maps give gpt2's n_embd etc.
FIELDS = (
    ("model_type", "model_type"),
    ("hidden_size", "hidden_size"),
    ("layers", "num_hidden_layers"),
    ("heads", "num_attention_heads"),
    ("kv_heads", "num_key_value_heads"),
    ("vocab_size", "vocab_size"),
    ("max_positions", "max_position_embeddings"),
)


def _template_id(tokenizer: Any) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return None
    text = template if isinstance(template, str) else repr(template)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]


def describe(config: Any, tokenizer: Any) -> dict[str, Any]:
    """The architecture fields of one model (None where a config lacks one)."""
    out: dict[str, Any] = {}
    for name, attr in FIELDS:
        try:
            out[name] = getattr(config, attr, None)
        except AttributeError:
            out[name] = None
    if out.get("kv_heads") is None:
        out["kv_heads"] = out.get("heads")
    out["chat_template"] = _template_id(tokenizer)
    return out


def architecture_gate(current: Subject, candidate: Subject, ctx: SwapContext) -> GateResult:
    if current.cache.get("architecture") is None:
        current.cache["architecture"] = describe(current.config, current.tokenizer)
    old = current.cache["architecture"]
    new = describe(candidate.config, candidate.tokenizer)
    diff = {k: {"current": old[k], "candidate": v} for k, v in new.items() if old.get(k) != v}
    data = {"current": old, "candidate": new, "diff": diff}
    if not diff:
        return GateResult(
            "architecture", True, f"{new['model_type']}, {new['layers']} layers: same", data=data
        )
    text = ", ".join(f"{k} {d['current']} -> {d['candidate']}" for k, d in diff.items())
    return GateResult("architecture", False, f"architecture differs: {text}", data=data)


def _render(tokenizer: Any, probe: str) -> str | None:
    if not getattr(tokenizer, "chat_template", None):
        return None
    return str(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": probe}], tokenize=False, add_generation_prompt=True
        )
    )


def tokenizer_gate(current: Subject, candidate: Subject, ctx: SwapContext) -> GateResult:
    a, b = current.tokenizer, candidate.tokenizer
    probes = ctx.gates.probes
    va, vb = a.get_vocab(), b.get_vocab()
    problems = []
    if va != vb:
        diff = len(set(va.items()) ^ set(vb.items()))
        problems.append(
            f"vocabulary differs ({len(va)} vs {len(vb)} tokens, {diff} entries differ)"
        )
    if a.special_tokens_map != b.special_tokens_map:
        problems.append(f"special tokens differ ({a.special_tokens_map} vs {b.special_tokens_map})")
    ids_a, ids_b = probe_ids(a, probes), probe_ids(b, probes)
    split = [p for p, x, y in zip(probes, ids_a, ids_b, strict=True) if x != y]
    if split:
        i = probes.index(split[0])
        problems.append(
            f"{len(split)} of {len(probes)} probes tokenize differently "
            f"(probe {short(split[0])!r}: {len(ids_a[i])} vs {len(ids_b[i])} tokens)"
        )
    rendered = [p for p in probes if _render(a, p) != _render(b, p)]
    if rendered:
        problems.append(
            f"the chat template renders {len(rendered)} of {len(probes)} probes differently "
            f"(probe {short(rendered[0])!r})"
        )
    data = {"probes_tokenized_differently": split, "probes_rendered_differently": rendered}
    if not problems:
        return GateResult(
            "tokenizer",
            True,
            f"{len(va)} tokens, special tokens, probe tokenization and chat template match",
            data=data,
        )
    return GateResult("tokenizer", False, "; ".join(problems), data=data)
