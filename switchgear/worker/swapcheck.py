"""``switchgear swap-check OLD NEW``: the hot-swap gates offline, printed as a table.

With ``--eval FILE.jsonl`` (``{"prompt": ..., "answer"|"label": ...}`` per line) both models
also answer every prompt greedily (an answer that starts with an expected label counts as
that label); exact-match accuracy and macro-F1 over the labels are
compared, and the candidate is refused when it stops producing a label the current model
produces or loses more accuracy than ``worker.gates.eval_accuracy_drop``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switchgear.errors import ConfigError
from switchgear.plugins.manager import call_hook_sync
from switchgear.settings import Settings, load_settings
from switchgear.settings.worker import GateSettings, ModelSpec
from switchgear.worker.gates import GateResult, Subject, SwapContext, collect
from switchgear.worker.loading import ModelBundle, load_bundle


@dataclass(frozen=True, slots=True)
class EvalScore:
    accuracy: float
    macro_f1: float
    labels: frozenset[str]


def read_eval(path: str | Path) -> list[tuple[str, str]]:
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        item = json.loads(line)
        expected = item.get("answer", item.get("label"))
        if "prompt" not in item or expected is None:
            raise ConfigError(f"{path}:{n}", "each line needs prompt and answer (or label)")
        rows.append((str(item["prompt"]), str(expected)))
    return rows


def answers(bundle: ModelBundle, rows: list[tuple[str, str]]) -> list[str]:
    """Greedy answers, each reduced to the longest expected label it starts with (else its first line)."""
    from switchgear.worker.engine import Engine, SamplingParams

    labels = sorted({e.strip() for _, e in rows if e.strip()}, key=len, reverse=True)
    n = (
        max(
            (len(bundle.tokenizer(e, add_special_tokens=False)["input_ids"]) for _, e in rows),
            default=1,
        )
        + 2
    )

    async def run() -> list[str]:
        engine = Engine(bundle, max_batch_size=16)
        try:

            async def one(prompt: str) -> str:
                ids = bundle.tokenizer(prompt)["input_ids"]
                parts = [
                    e.text
                    async for e in engine.generate(ids, SamplingParams(max_tokens=n, temperature=0))
                ]
                text = "".join(parts).strip()
                return next(
                    (lab for lab in labels if text.startswith(lab)), text.split("\n")[0].strip()
                )

            return list(await asyncio.gather(*(one(p) for p, _ in rows)))
        finally:
            engine.close()

    return asyncio.run(run())


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


def eval_gate(old: EvalScore, new: EvalScore, tolerance: float) -> GateResult:
    dropped = sorted(old.labels - new.labels)
    drop = old.accuracy - new.accuracy
    detail = (
        f"accuracy {new.accuracy:.3f} vs {old.accuracy:.3f}, macro-F1 {new.macro_f1:.3f} vs "
        f"{old.macro_f1:.3f}"
    )
    if dropped:
        return GateResult(
            "eval",
            False,
            f"{detail}; labels no longer produced: {', '.join(dropped)}",
            drop,
            tolerance,
        )
    return GateResult(
        "eval", drop <= tolerance, f"{detail} (max drop {tolerance:g})", drop, tolerance
    )


def run_gates(
    old: ModelBundle, new: ModelBundle, gates: GateSettings, pm: Any, *, force: bool = False
) -> list[GateResult]:
    ctx = SwapContext(gates=gates, force=force, pm=pm)
    raw = call_hook_sync(
        pm,
        "verify_swap",
        current=Subject(old.name, old.tokenizer, old),
        candidate=Subject(new.name, new.tokenizer, new),
        settings=ctx,
    )
    return collect(raw)


def table(rows: list[GateResult]) -> str:
    head = ("gate", "result", "value", "limit", "detail")
    body = [
        (
            r.gate,
            "PASS" if r.passed else ("FORCED" if r.forced else "FAIL"),
            "" if r.value is None else f"{r.value:.4g}",
            "" if r.limit is None else f"{r.limit:g}",
            r.detail,
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in body]
    return "\n".join(lines)


def swap_check(
    old: str,
    new: str,
    *,
    quantization: str | None = None,
    eval_file: str | None = None,
    settings: Settings | None = None,
    pm: Any = None,
) -> tuple[bool, list[GateResult]]:
    from switchgear.worker.app import register_gates, worker_plugin_manager

    settings = settings or load_settings(None)
    worker = settings.worker
    gates = worker.gates if worker else GateSettings()
    base = worker.model.model_dump() if worker else {}
    if pm is None:
        pm = worker_plugin_manager(settings)
    register_gates(pm)
    old_b = load_bundle(
        ModelSpec.model_validate({**base, "model_name_or_path": old, "quantization": None}), pm
    )
    new_b = load_bundle(
        ModelSpec.model_validate({**base, "model_name_or_path": new, "quantization": quantization}),
        pm,
    )
    results = run_gates(old_b, new_b, gates, pm)
    if eval_file:
        rows = read_eval(eval_file)
        expected = [e for _, e in rows]
        results.append(
            eval_gate(
                score(answers(old_b, rows), expected),
                score(answers(new_b, rows), expected),
                gates.eval_accuracy_drop,
            )
        )
    ok = all(r.passed or r.forced for r in results)
    return ok, results


def swap_check_cli(
    old: str,
    new: str,
    quantization: str | None = None,
    eval_file: str | None = None,
    config: str | None = None,
) -> int:
    settings = load_settings(config) if config else None
    ok, results = swap_check(
        old, new, quantization=quantization, eval_file=eval_file, settings=settings
    )
    print(table(results))
    print(f"\n{'OK' if ok else 'REFUSED'}: {new} {'may' if ok else 'may not'} replace {old}")
    return 0 if ok else 1
