"""Each load format and each quantization method, through the same hooks the worker uses."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from switchgear.plugins.hookspecs import hookimpl
from switchgear.settings.worker import ModelSpec
from switchgear.worker.decode import prompt_logits
from switchgear.worker.engine import Engine, SamplingParams
from switchgear.worker.loading import detect_format, load_bundle


async def generate(bundle: Any, prompt: str = "hello 你好", n: int = 6) -> tuple[str, Any]:
    engine = Engine(bundle)
    try:
        ids = bundle.tokenizer(prompt)["input_ids"]
        events = [
            ev async for ev in engine.generate(ids, SamplingParams(max_tokens=n, temperature=0))
        ]
    finally:
        engine.close()
    return "".join(e.text for e in events), events[-1]


@pytest.mark.parametrize(
    ("fmt", "arch"),
    [("safetensors", "llama"), ("bin", "llama"), ("pt", "llama"), ("safetensors", "gpt2")],
)
async def test_each_format_loads_and_generates(
    tiny_format: Any, plugin_manager: Any, fmt: str, arch: str
) -> None:
    path = tiny_format(fmt, arch)
    assert detect_format(path)[0] == fmt
    bundle = await asyncio.to_thread(
        load_bundle, ModelSpec(model_name_or_path=str(path)), plugin_manager
    )
    assert bundle.fmt == fmt and bundle.device == "cpu" and bundle.dtype == "fp32"
    _, last = await generate(bundle)
    assert last.finish_reason in ("length", "stop") and last.prompt_tokens > 0


async def test_pt_file_path_loads_like_its_directory(
    tiny_format: Any, plugin_manager: Any, tiny: Path
) -> None:
    pt = tiny_format("pt", "llama") / "model.pt"
    a = load_bundle(ModelSpec(model_name_or_path=str(pt)), plugin_manager)
    b = load_bundle(ModelSpec(model_name_or_path=str(tiny)), plugin_manager)
    ids = [a.tokenizer("hello world")["input_ids"]]
    assert float((prompt_logits(a, ids) - prompt_logits(b, ids)).abs().max()) == 0.0


@pytest.mark.parametrize("method", ["int8-dynamic", "quanto-int8", "quanto-int4", "onnx"])
async def test_each_quantization_generates(tiny: Path, plugin_manager: Any, method: str) -> None:
    bundle = load_bundle(
        ModelSpec(model_name_or_path=str(tiny), quantization=method), plugin_manager
    )
    assert bundle.quantization == method
    _, last = await generate(bundle)
    assert last.completion_tokens > 0 or last.finish_reason == "stop"


async def test_onnx_export_matches_pytorch(
    tiny: Path, tiny_onnx: Path, plugin_manager: Any
) -> None:
    torch_bundle = load_bundle(ModelSpec(model_name_or_path=str(tiny)), plugin_manager)
    onnx_bundle = load_bundle(ModelSpec(model_name_or_path=str(tiny_onnx)), plugin_manager)
    assert onnx_bundle.fmt == "onnx" and onnx_bundle.quantization == "onnx"
    ids = [
        torch_bundle.tokenizer(p)["input_ids"] for p in ("hello world", "你好，今天天气怎么样？")
    ]
    assert (
        float((prompt_logits(onnx_bundle, ids) - prompt_logits(torch_bundle, ids)).abs().max())
        < 1e-4
    )
    text_onnx, _ = await generate(onnx_bundle)
    text_torch, _ = await generate(torch_bundle)
    assert text_onnx == text_torch


def test_unknown_quantization_is_a_config_error(tiny: Path, plugin_manager: Any) -> None:
    from switchgear.errors import ConfigError

    with pytest.raises(ConfigError, match="quantization"):
        load_bundle(ModelSpec(model_name_or_path=str(tiny), quantization="fp3"), plugin_manager)


def test_hook_load_model_plugin_wins(tiny: Path, plugin_manager: Any) -> None:
    seen: list[str] = []

    class Loader:
        @hookimpl(tryfirst=True)
        def load_model(self, spec: Any) -> Any:
            from switchgear.worker.loading import load_pretrained

            seen.append(spec.model_name_or_path)
            return load_pretrained(spec)

    plugin_manager.register(Loader())
    assert load_bundle(ModelSpec(model_name_or_path=str(tiny)), plugin_manager).fmt == "safetensors"
    assert seen == [str(tiny)]


def test_hook_quantize_model_reported_in_metadata(tiny: Path, plugin_manager: Any) -> None:
    from switchgear.worker.metrics import WorkerMetrics
    from switchgear.worker.views.models import model_card

    bundle = load_bundle(
        ModelSpec(model_name_or_path=str(tiny), quantization="quanto-int8"), plugin_manager
    )
    assert model_card(bundle)["metadata"]["quantization"] == "quanto-int8"
    metrics = WorkerMetrics()
    metrics.set_model(bundle)
    assert b'quantization="quanto-int8"' in metrics.render()


def test_cudnn_attention_is_switched_on_cuda_only() -> None:
    import torch

    from switchgear.worker.loading import configure_attention

    before = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        configure_attention("cpu", cudnn=False)
        assert torch.backends.cuda.cudnn_sdp_enabled()
        configure_attention("cuda:0", cudnn=False)
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        configure_attention("cuda", cudnn=True)
        assert torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)
