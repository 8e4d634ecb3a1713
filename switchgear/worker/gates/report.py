"""The answer to a swap or rollback: every gate's result and the figures lifted from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from switchgear.worker.gates.base import GateResult


@dataclass(slots=True)
class SwapReport:
    ok: bool
    candidate: str
    gates: list[GateResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    code: str | None = None
    path: str | None = None

    @property
    def failed(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed and not g.forced]

    def summary(self) -> dict[str, Any]:
        """The figures an operator looks for first, lifted from the gates' data."""
        out: dict[str, Any] = {}
        for g in self.gates:
            data = g.data or {}
            if g.gate == "outputs" and "max_abs_logit_error" in data:
                out["reference"] = data["reference"]
                out["max_abs_logit_error"] = data["max_abs_logit_error"]
            elif g.gate == "latency" and "ratio" in data:
                out["latency"] = {k: data[k] for k in ("ratio", "lower", "upper", "confidence")}
            elif g.gate == "eval" and "accuracy" in data:
                out["eval"] = {k: data[k] for k in ("set", "accuracy", "macro_f1")}
            elif g.gate == "architecture" and data.get("diff"):
                out["architecture_diff"] = data["diff"]
        return out

    def to_dict(self) -> dict[str, Any]:
        error = None
        if not self.ok:
            message = self.error or "swap refused by gates: " + ", ".join(
                f"{g.gate} ({g.detail})" for g in self.failed
            )
            error = {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": self.code or "swap_refused",
            }
        return {
            "ok": self.ok,
            "candidate": self.candidate,
            "path": self.path,
            "seconds": round(self.seconds, 3),
            "error": error,
            "failed": [g.gate for g in self.failed],
            "forced": [g.gate for g in self.gates if g.forced],
            "summary": self.summary(),
            "gates": [asdict(g) for g in self.gates],
        }
