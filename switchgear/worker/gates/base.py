"""What every gate shares: its result, the two sides of a swap, and the swap's context.

A gate is a function ``gate(current, candidate, ctx) -> GateResult``. Gates run on a thread
of their own (never the event loop); a gate that needs the current model calls
``current.run(fn)``, which runs ``fn(bundle)`` where the model is allowed to run (between
batches on the serving engine's thread in the worker, directly in ``swap-check``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from switchgear.settings.worker import GateSettings
from switchgear.worker.loading import ModelBundle

#: Gates that no ``force`` can override: a model that fails them is broken, not different.
INTEGRITY = ("finite_weights", "finite_logits", "generation")


@dataclass(frozen=True, slots=True)
class GateResult:
    gate: str
    passed: bool
    detail: str
    value: float | None = None
    limit: float | None = None
    forced: bool = False
    #: Structured numbers for the report (config diff, confidence bound, eval scores).
    data: dict[str, Any] | None = None
    #: How long the gate ran (set by the built-in runner).
    seconds: float | None = None


def _direct(bundle: ModelBundle | None) -> Callable[[Callable[[ModelBundle], Any]], Any]:
    def run(fn: Callable[[ModelBundle], Any]) -> Any:
        if bundle is None:
            raise RuntimeError("the model is not loaded")
        return fn(bundle)

    return run


@dataclass(slots=True)
class Subject:
    """One side of a swap: the current model (``bundle`` is None after a drain) or the candidate.

    ``cache`` holds what was measured on the current model before a drain unloaded it
    (``generations``: greedy token ids per probe; ``latency``: forward seconds per round).
    """

    name: str
    tokenizer: Any
    bundle: ModelBundle | None
    runner: Callable[[Callable[[ModelBundle], Any]], Any] | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    def run(self, fn: Callable[[ModelBundle], Any]) -> Any:
        """``fn(bundle)`` on the thread allowed to use this model; its result."""
        return (self.runner or _direct(self.bundle))(fn)

    @property
    def config(self) -> Any:
        return getattr(self.bundle.model, "config", None) if self.bundle is not None else None


def parse_force(force: bool | list[str] | tuple[str, ...] | None) -> bool | frozenset[str]:
    """``True`` (every forcible gate), ``False``, or the named gates; integrity is refused."""
    if force is None or force is False:
        return False
    if force is True:
        return True
    names = frozenset(force)
    never = sorted(names & set(INTEGRITY))
    if never:
        raise ValueError(f"gate {never[0]} checks integrity and can never be forced")
    return names


@dataclass(slots=True)
class SwapContext:
    """The ``settings`` argument of ``verify_swap``: tolerances, force, and a shared cache."""

    gates: GateSettings
    force: bool | frozenset[str] = False
    pm: Any = None
    cache: dict[str, Any] = field(default_factory=dict)
    #: ``"all"`` or ``"integrity"`` (a rollback re-runs only the gates that cannot be forced).
    scope: str = "all"

    def allows(self, gate: str) -> bool:
        """Whether a failure of ``gate`` is overridden by ``force``."""
        if gate in INTEGRITY:
            return False
        return self.force is True or (isinstance(self.force, frozenset) and gate in self.force)

    def reference(self, candidate: ModelBundle) -> ModelBundle | None:
        """The candidate's unquantized PyTorch twin (loaded once per swap), or None."""
        if "reference" not in self.cache:
            self.cache["reference"] = _load_reference(candidate)
        return cast("ModelBundle | None", self.cache["reference"])


def _load_reference(candidate: ModelBundle) -> ModelBundle | None:
    from pathlib import Path

    from switchgear.worker.loading import detect_format, load_pretrained

    if candidate.quantization is None and not candidate.spec.reference:
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


def short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
