"""The ``eval`` gate: both models answer a labelled set; the candidate may lose little.

The set is ``worker.gates.eval_file`` (JSONL, ``{"prompt": ..., "answer"|"label": ...}`` per
line) or, when none is configured, :data:`BUILTIN` (a few questions with one right answer).
Both models answer every prompt greedily; an answer that starts with an expected label counts
as that label. Exact-match accuracy and macro-F1 over the labels are compared: the candidate is
refused when it stops producing a label the current model produces, or loses more than
``eval_accuracy_drop`` accuracy or ``eval_f1_drop`` macro-F1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from switchgear.errors import ConfigError
from switchgear.worker.gates.base import GateResult, Subject, SwapContext
from switchgear.worker.loading import ModelBundle

BUILTIN: tuple[tuple[str, str], ...] = (
    ("Q: What is 2 + 2?\nA:", "4"),
    ("Q: What is the capital of France?\nA:", "Paris"),
    ("Q: What colour is fresh grass?\nA:", "green"),
    ("Q: Is ice cold? Answer yes or no.\nA:", "yes"),
    ("Translate to English: 你好\nA:", "Hello"),
    ("问：中国的首都是哪里？\n答：", "北京"),
)


@dataclass(frozen=True, slots=True)
class EvalScore:
    accuracy: float
    macro_f1: float
    labels: frozenset[str]


def read_eval(path: str | Path) -> list[tuple[str, str]]:
    rows = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("worker.gates.eval_file", f"cannot read {path}: {exc}") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{n}", f"not JSON: {exc}") from None
        expected = item.get("answer", item.get("label")) if isinstance(item, dict) else None
        if not isinstance(item, dict) or "prompt" not in item or expected is None:
            raise ConfigError(f"{path}:{n}", "each line needs prompt and answer (or label)")
        rows.append((str(item["prompt"]), str(expected)))
    return rows


def answers(bundle: ModelBundle, rows: list[tuple[str, str]]) -> list[str]:
    """Greedy answers, each reduced to the longest expected label it starts with (else its first line)."""
    from switchgear.worker.gates.integrity import greedy

    tok = bundle.tokenizer
    labels = sorted({e.strip() for _, e in rows if e.strip()}, key=len, reverse=True)
    n = max((len(tok(e, add_special_tokens=False)["input_ids"]) for _, e in rows), default=1) + 2
    out = []
    for ids in greedy(bundle, [tok(p)["input_ids"] for p, _ in rows], n):
        text = tok.decode(ids, skip_special_tokens=True).strip()
        out.append(
            next((lab for lab in labels if text.startswith(lab)), text.split("\n")[0].strip())
        )
    return out


def score(predictions: list[str], expected: list[str]) -> EvalScore:
    labels = sorted(set(expected))
    correct = sum(p == e for p, e in zip(predictions, expected, strict=True))
    f1s = []
    for label in labels:
        tp = sum(p == label and e == label for p, e in zip(predictions, expected, strict=True))
        fp = sum(p == label and e != label for p, e in zip(predictions, expected, strict=True))
        fn = sum(p != label and e == label for p, e in zip(predictions, expected, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    produced = frozenset(p for p in predictions if p in labels)
    return EvalScore(correct / max(1, len(expected)), sum(f1s) / max(1, len(f1s)), produced)


def compare_scores(
    old: EvalScore, new: EvalScore, tolerance: float, f1_tolerance: float | None = None
) -> GateResult:
    f1_tol = tolerance if f1_tolerance is None else f1_tolerance
    dropped = sorted(old.labels - new.labels)
    drop, f1_drop = old.accuracy - new.accuracy, old.macro_f1 - new.macro_f1
    detail = (
        f"accuracy {new.accuracy:.3f} vs {old.accuracy:.3f}, macro-F1 {new.macro_f1:.3f} vs "
        f"{old.macro_f1:.3f}"
    )
    data: dict[str, Any] = {
        "accuracy": {"current": old.accuracy, "candidate": new.accuracy, "drop": drop},
        "macro_f1": {"current": old.macro_f1, "candidate": new.macro_f1, "drop": f1_drop},
        "labels_lost": dropped,
    }
    if dropped:
        return GateResult(
            "eval",
            False,
            f"{detail}; labels no longer produced: {', '.join(dropped)}",
            drop,
            tolerance,
            data=data,
        )
    ok = drop <= tolerance and f1_drop <= f1_tol
    return GateResult(
        "eval",
        ok,
        f"{detail} (max drop {tolerance:g} accuracy, {f1_tol:g} macro-F1)",
        drop,
        tolerance,
        data=data,
    )


def eval_rows(ctx: SwapContext) -> tuple[str, list[tuple[str, str]]]:
    """(what the set is, its rows), read once per swap."""
    if "eval_rows" not in ctx.cache:
        path = ctx.gates.eval_file
        ctx.cache["eval_rows"] = (
            (str(path), read_eval(path)) if path else ("built-in set", list(BUILTIN))
        )
    return cast("tuple[str, list[tuple[str, str]]]", ctx.cache["eval_rows"])


def current_answers(current: Subject, ctx: SwapContext) -> list[str] | None:
    if "eval" not in current.cache:
        if current.bundle is None:
            return None
        _, rows = eval_rows(ctx)
        current.cache["eval"] = current.run(lambda b: answers(b, rows))
    return cast("list[str] | None", current.cache["eval"])


def eval_gate(current: Subject, candidate: Subject, ctx: SwapContext) -> GateResult:
    what, rows = eval_rows(ctx)
    old = current_answers(current, ctx)
    if old is None:
        return GateResult("eval", True, "no current model to compare against")
    assert candidate.bundle is not None
    expected = [e for _, e in rows]
    new = answers(candidate.bundle, rows)
    res = compare_scores(
        score(old, expected),
        score(new, expected),
        ctx.gates.eval_accuracy_drop,
        ctx.gates.eval_f1_drop,
    )
    data = {**(res.data or {}), "set": what, "prompts": len(rows)}
    return GateResult(
        "eval",
        res.passed,
        f"{what}, {len(rows)} prompts: {res.detail}",
        res.value,
        res.limit,
        data=data,
    )
