"""Loading one model: format detection, device and dtype, progress, load time and memory.

:func:`load_bundle` is the one entry point (startup, hot swap, swap-check, doctor): it asks
the ``load_model`` hook (the built-in implementation is :func:`load_pretrained`) and then
``quantize_model`` when the spec names a method. A :class:`ModelBundle` is what the rest of
the worker passes around; the model in it is never shared between two bundles.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from switchgear.errors import ConfigError
from switchgear.settings.worker import ModelSpec

if TYPE_CHECKING:
    import torch

log = logging.getLogger("switchgear.worker.loading")

Format = Literal["safetensors", "bin", "pt", "onnx"]
_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass(slots=True)
class ModelBundle:
    """A loaded model with everything needed to serve and verify it."""

    spec: ModelSpec
    model: Any
    tokenizer: Any
    device: str
    dtype: str
    fmt: Format
    path: Path
    context_length: int
    quantization: str | None = None
    load_seconds: float = 0.0
    memory: dict[str, int] = field(default_factory=dict)
    keep_alive: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.served_name()

    @property
    def is_torch(self) -> bool:
        import torch

        return isinstance(self.model, torch.nn.Module)


class LoadProgress:
    """A progress bar on a terminal, log lines otherwise."""

    def __init__(self, what: str, steps: list[str]) -> None:
        self.what, self.steps, self.bar = what, steps, None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=len(steps), desc=f"loading {what}", unit="step")

    def step(self, name: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(name)
            self.bar.update(1)
        else:
            log.info(
                "loading %s: %s (%d/%d)",
                self.what,
                name,
                self.steps.index(name) + 1 if name in self.steps else 0,
                len(self.steps),
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def configure_attention(device: str, cudnn: bool) -> None:
    """On CUDA, whether scaled-dot-product attention may pick cuDNN's kernel (process-wide)."""
    if device.startswith("cuda"):
        import torch

        torch.backends.cuda.enable_cudnn_sdp(cudnn)


def resolve_dtype(dtype: str, device: str) -> str:
    if dtype == "auto":
        return "fp16" if device.startswith("cuda") else "fp32"
    return dtype


def detect_format(path: Path) -> tuple[Format, Path]:
    """The checkpoint format and the directory that holds config and tokenizer."""
    if path.is_file():
        if path.suffix in (".pt", ".pth"):
            return "pt", path.parent
        if path.suffix == ".onnx":
            return "onnx", path.parent
        raise ConfigError(
            "worker.model.model_name_or_path", f"{path} is not a model directory or .pt file"
        )
    if not path.is_dir():
        raise ConfigError(
            "worker.model.model_name_or_path", f"{path} does not exist (no model hub is reachable)"
        )
    names = {p.name for p in path.iterdir()}
    if any(n.endswith(".onnx") for n in names):
        return "onnx", path
    if any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names):
        return "safetensors", path
    if any(
        n.startswith("pytorch_model") and n.endswith((".bin", ".bin.index.json")) for n in names
    ):
        return "bin", path
    if any(n.endswith((".pt", ".pth")) for n in names):
        return "pt", path
    raise ConfigError(
        "worker.model.model_name_or_path", f"{path} holds no safetensors, bin, pt or onnx weights"
    )


def checkpoint_files(path: Path, fmt: Format) -> list[Path]:
    if path.is_file():
        return [path]
    patterns = {
        "safetensors": "*.safetensors",
        "bin": "pytorch_model*.bin",
        "pt": "*.pt*",
        "onnx": "*.onnx",
    }
    return sorted(
        p
        for p in path.glob(patterns[fmt])
        if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".onnx")
    )


def iter_checkpoint(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every tensor stored in a PyTorch checkpoint, file by file."""
    import torch

    for f in files:
        if f.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(f), framework="pt") as sf:
                for key in sf.keys():
                    yield key, sf.get_tensor(key)
        else:
            state = torch.load(f, map_location="cpu", weights_only=True)
            yield from state.items()


def memory_snapshot() -> dict[str, int]:
    """Process RSS and, on CUDA, allocated/reserved/peak bytes per device."""
    import psutil
    import torch

    snap = {"rss_bytes": psutil.Process(os.getpid()).memory_info().rss}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            snap[f"cuda{i}_allocated_bytes"] = torch.cuda.memory_allocated(i)
            snap[f"cuda{i}_reserved_bytes"] = torch.cuda.memory_reserved(i)
            snap[f"cuda{i}_peak_bytes"] = torch.cuda.max_memory_allocated(i)
    return snap


def load_tokenizer(spec: ModelSpec, directory: Path) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=spec.trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def model_path(name_or_path: str) -> Path:
    """Where a model path points: ``~`` expanded, then ``..`` and symlinks resolved.

    The one resolver for both the swap check against ``worker.model_roots`` and the load,
    so what is checked is what is loaded.
    """
    return Path(name_or_path).expanduser().resolve()


def load_pretrained(spec: ModelSpec) -> ModelBundle:
    """The built-in loader: transformers Auto classes, optimum's ORT classes for ONNX."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    started = time.perf_counter()
    path = model_path(spec.model_name_or_path)
    fmt, directory = detect_format(path)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    progress = LoadProgress(spec.served_name(), ["tokenizer", "weights", "device"])
    try:
        tokenizer = load_tokenizer(spec, directory)
        progress.step("tokenizer")
        keep: list[Any] = []
        if fmt == "onnx":
            from optimum.onnxruntime import ORTModelForCausalLM

            provider = (
                "CUDAExecutionProvider" if device.startswith("cuda") else "CPUExecutionProvider"
            )
            model = ORTModelForCausalLM.from_pretrained(
                str(directory), provider=provider, use_cache=True
            )
            dtype = "fp32"
        else:
            torch_dtype = getattr(torch, _DTYPES[dtype])
            if fmt == "pt":
                config = AutoConfig.from_pretrained(
                    str(directory), trust_remote_code=spec.trust_remote_code
                )
                model = AutoModelForCausalLM.from_config(
                    config, dtype=torch_dtype, trust_remote_code=spec.trust_remote_code
                )
                files = checkpoint_files(path, fmt)
                state = torch.load(files[0], map_location="cpu", weights_only=True)
                result = model.load_state_dict(state, strict=False)
                if result.missing_keys:
                    log.warning(
                        "%s: parameters missing from %s: %s",
                        spec.served_name(),
                        files[0].name,
                        ", ".join(result.missing_keys[:5]),
                    )
            else:
                model = AutoModelForCausalLM.from_pretrained(
                    str(directory), dtype=torch_dtype, trust_remote_code=spec.trust_remote_code
                )
        progress.step("weights")
        if fmt != "onnx":
            model = model.to(device).eval()
        progress.step("device")
    finally:
        progress.close()
    config = model.config
    ctx = spec.context_length or int(
        getattr(config, "max_position_embeddings", 0)
        or getattr(config, "n_positions", 0)
        or getattr(tokenizer, "model_max_length", 2048)
    )
    bundle = ModelBundle(
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        fmt=fmt,
        path=path,
        context_length=min(ctx, 1_000_000),
        quantization="onnx" if fmt == "onnx" else None,
        keep_alive=keep,
    )
    bundle.load_seconds = time.perf_counter() - started
    return bundle


def load_bundle(spec: ModelSpec, pm: Any) -> ModelBundle:
    """Load (``load_model`` hook) and quantize (``quantize_model`` hook) one model."""
    from switchgear.plugins.manager import first_result_sync

    started = time.perf_counter()
    before = memory_snapshot()
    bundle: ModelBundle | None = first_result_sync(pm, "load_model", spec=spec)
    if bundle is None:
        raise ConfigError("worker.model", f"no plugin could load {spec.model_name_or_path}")
    method = spec.quantization
    if method and method != bundle.quantization:
        quantized: ModelBundle | None = first_result_sync(
            pm, "quantize_model", bundle=bundle, method=method, spec=spec
        )
        if quantized is None:
            raise ConfigError(
                "worker.model.quantization", f"no plugin offers quantization {method!r}"
            )
        bundle = quantized
    bundle.load_seconds = time.perf_counter() - started
    after = memory_snapshot()
    bundle.memory = {k: v - before.get(k, 0) if k == "rss_bytes" else v for k, v in after.items()}
    log.info(
        "loaded %s (%s, %s, %s, quantization=%s) in %.2fs, +%.1f MiB RSS",
        bundle.name,
        bundle.fmt,
        bundle.device,
        bundle.dtype,
        bundle.quantization,
        bundle.load_seconds,
        bundle.memory.get("rss_bytes", 0) / 2**20,
    )
    return bundle
