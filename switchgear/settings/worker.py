"""Settings of the model worker (owned by the worker part)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from switchgear.settings.base import Section


class ModelSpec(Section):
    """What to load: path, dtype, device, quantization, and the name clients use."""

    model_name_or_path: str
    name: str | None = None
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    device: str = "auto"
    quantization: str | None = None
    trust_remote_code: bool = False
    context_length: int | None = Field(None, gt=0)
    languages: list[str] = Field(default_factory=list)


class WorkerSection(Section):
    model: ModelSpec
    max_batch_size: int = Field(8, ge=1, le=256)
    model_roots: list[str] = Field(default_factory=list)
