"""Continuous batching: a request that joins a running batch decodes as it would alone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from switchgear.settings.worker import ModelSpec
from switchgear.worker.engine import Engine, SamplingParams
from switchgear.worker.loading import load_bundle
from switchgear.worker.metrics import WorkerMetrics


async def text_of(engine: Engine, prompt: str, n: int) -> str:
    ids = engine.bundle.tokenizer(prompt)["input_ids"]
    return "".join(
        [e.text async for e in engine.generate(ids, SamplingParams(max_tokens=n, temperature=0))]
    )


@pytest.mark.parametrize("which", ["llama", "gpt2", "onnx"])
async def test_request_joining_a_running_batch_matches_solo(
    which: str, tiny: Path, tiny_onnx: Path, tiny_format: Any, plugin_manager: Any
) -> None:
    path = {"llama": tiny, "gpt2": tiny_format("safetensors", "gpt2"), "onnx": tiny_onnx}[which]
    metrics = WorkerMetrics()
    engine = Engine(
        load_bundle(ModelSpec(model_name_or_path=str(path)), plugin_manager), metrics=metrics
    )
    try:
        solo = await text_of(engine, "你好，今天天气怎么样？ The weather", 12)
        long_ids = engine.bundle.tokenizer("hi")["input_ids"]
        running = engine.generate(long_ids, SamplingParams(max_tokens=400, temperature=0))
        await running.__anext__()
        joined = await text_of(engine, "你好，今天天气怎么样？ The weather", 12)
        await running.aclose()
        assert joined == solo
        assert metrics.registry.get_sample_value("switchgear_worker_batch_size_max") == 2
    finally:
        engine.close()


async def test_a_greedy_row_and_a_biased_row_in_one_batch_each_decode_as_alone(
    tiny: Path, plugin_manager: Any
) -> None:
    metrics = WorkerMetrics()
    engine = Engine(
        load_bundle(ModelSpec(model_name_or_path=str(tiny)), plugin_manager), metrics=metrics
    )
    try:
        prompt = "The quick brown fox"
        solo = await text_of(engine, prompt, 8)
        ids = engine.bundle.tokenizer(prompt)["input_ids"]
        token = engine.bundle.tokenizer("zz")["input_ids"][0]
        biased = SamplingParams(max_tokens=8, temperature=0, logit_bias=((token, 100.0),))

        async def collect(params: SamplingParams) -> str:
            return "".join([e.text async for e in engine.generate(ids, params)])

        engine.pause()
        plain_task = asyncio.create_task(collect(SamplingParams(max_tokens=8, temperature=0)))
        biased_task = asyncio.create_task(collect(biased))
        assert await asyncio.to_thread(engine.wait_queued, 2)
        engine.resume()
        plain_text, biased_text = await plain_task, await biased_task
        assert plain_text == solo
        piece = engine.bundle.tokenizer.decode([token])
        assert biased_text == piece * 8 and biased_text != solo
        assert metrics.registry.get_sample_value("switchgear_worker_batch_size_max") == 2
    finally:
        engine.close()
