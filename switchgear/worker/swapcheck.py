"""``switchgear swap-check OLD NEW``: the hot-swap gates offline, printed as a table.

The gates are those of a live swap (``switchgear.worker.gates``), with the same settings.
``--eval FILE.jsonl`` (``{"prompt": ..., "answer"|"label": ...}`` per line) replaces
``worker.gates.eval_file`` for the eval gate (see ``gates/evals.py``).
"""

from __future__ import annotations

from typing import Any

from switchgear.plugins.manager import call_hook_sync
from switchgear.settings import Settings, load_settings
from switchgear.settings.worker import GateSettings, ModelSpec
from switchgear.worker.gates import GateResult, Subject, SwapContext, collect
from switchgear.worker.gates.evals import EvalScore, answers, read_eval, score
from switchgear.worker.loading import ModelBundle, load_bundle

__all__ = ["EvalScore", "answers", "read_eval", "run_gates", "score", "swap_check", "table"]


def run_gates(
    old: ModelBundle, new: ModelBundle, gates: GateSettings, pm: Any, *, force: Any = False
) -> list[GateResult]:
    ctx = SwapContext(gates=gates, force=force, pm=pm)
    raw = call_hook_sync(
        pm,
        "verify_swap",
        current=Subject(old.name, old.tokenizer, old),
        candidate=Subject(new.name, new.tokenizer, new),
        settings=ctx,
    )
    return collect(raw, ctx)


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
    reference: str | None = None,
    settings: Settings | None = None,
    pm: Any = None,
) -> tuple[bool, list[GateResult]]:
    from switchgear.worker.app import register_gates, worker_plugin_manager

    settings = settings or load_settings(None)
    worker = settings.worker
    gates = worker.gates if worker else GateSettings()
    if eval_file:
        gates = gates.model_copy(update={"eval_file": eval_file})
    base = worker.model.model_dump() if worker else {}
    if pm is None:
        pm = worker_plugin_manager(settings)
    register_gates(pm)
    old_b = load_bundle(
        ModelSpec.model_validate({**base, "model_name_or_path": old, "quantization": None}), pm
    )
    new_b = load_bundle(
        ModelSpec.model_validate(
            {
                **base,
                "model_name_or_path": new,
                "quantization": quantization,
                "reference": reference or base.get("reference"),
            }
        ),
        pm,
    )
    results = run_gates(old_b, new_b, gates, pm)
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
