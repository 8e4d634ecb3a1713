"""Settings of the model worker (owned by the worker part).

``worker.model`` is what to serve; ``worker.gates`` bounds what a hot-swap candidate may
change; ``worker.swap_mode`` chooses between loading the candidate beside the current model
(``beside``: no pause, needs memory for both) and unloading first (``drain``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from switchgear.settings.base import Section

Dtype = Literal["auto", "fp32", "fp16", "bf16"]


class ModelSpec(Section):
    """What to load: path, dtype, device, quantization, and the name clients use.

    ``reference`` is the model the output-consistency gate compares against; unset, it is
    the same checkpoint loaded unquantized in PyTorch (when the path holds PyTorch weights).
    """

    model_name_or_path: str
    name: str | None = None
    dtype: Dtype = "auto"
    device: str = "auto"
    quantization: str | None = None
    trust_remote_code: bool = False
    context_length: int | None = Field(default=None, gt=0)
    languages: list[str] = Field(default_factory=list)
    reference: str | None = None

    def served_name(self) -> str:
        from pathlib import Path

        return self.name or Path(self.model_name_or_path.rstrip("/")).name or "model"


class GateSettings(Section):
    """Tolerances of the built-in hot-swap gates (see docs/worker.md)."""

    weight_atol: float = Field(default=1e-6, ge=0)
    logit_tolerance: float = Field(default=0.5, ge=0)
    latency_tolerance: float = Field(default=0.15, ge=0)
    #: Interleaved rounds added at a time by the latency gate, up to ``latency_max_rounds``.
    latency_repeats: int = Field(default=8, ge=2, le=100)
    probes: list[str] = Field(
        default_factory=lambda: [
            "Hello, how are you today?",
            "The quick brown fox jumps over the lazy dog.",
            "你好，今天天气怎么样？",
            "Translate to English: 我喜欢机器学习。",
        ]
    )
    eval_accuracy_drop: float = Field(default=0.02, ge=0, le=1)
    latency_max_rounds: int = Field(default=40, ge=2, le=1000)
    latency_confidence: float = Field(default=0.95, gt=0.5, lt=1)
    latency_resamples: int = Field(default=2000, ge=100, le=100_000)
    #: Greedy tokens per probe for the generation gate (a repeat to this length is "stuck").
    generation_tokens: int = Field(default=16, ge=2, le=512)
    #: JSONL of ``{"prompt", "answer"|"label"}`` for the eval gate; unset: a built-in set.
    eval_file: str | None = None
    eval_f1_drop: float = Field(default=0.05, ge=0, le=1)


class WorkerSection(Section):
    model: ModelSpec
    max_batch_size: int = Field(default=8, ge=1, le=256)
    batch_wait_ms: float = Field(default=2.0, ge=0, le=1000)
    max_tokens_default: int = Field(default=256, ge=1)
    model_roots: list[str] = Field(default_factory=list)
    swap_mode: Literal["beside", "drain"] = "beside"
    gates: GateSettings = Field(default_factory=GateSettings)
    watch_config: bool = True
    watch_interval_s: float = Field(default=2.0, gt=0)
    torch_threads: int | None = Field(default=None, ge=1)
    #: On CUDA, let PyTorch's attention use cuDNN's kernel. Off by default: cuDNN builds an
    #: execution plan for every new (batch, length) shape, and decoding makes a new one at
    #: every step; flash or memory-efficient attention serve those shapes with no such cost.
    cudnn_attention: bool = False
    #: Where the replaced model configs are kept (JSON, one per swap); unset: in memory only.
    backup_dir: str | None = None
    backup_keep: int = Field(default=5, ge=1, le=100)
