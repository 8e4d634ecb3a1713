"""Benchmark: the batched worker against a plain sequential ``generate`` loop, same run.

For a tiny model and a ~100M-parameter random model: tokens/s and p50 latency at
concurrency 1, 4 and 16 through the worker's HTTP API, then the sequential baseline
(``model.generate`` one request after another) and the throughput ratio.

    .venv/bin/python bench/worker.py [--threads 2] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import aiohttp
from aiohttp import web

from switchgear.settings import parse_settings
from switchgear.worker.app import create_worker_app
from switchgear.worker.keys import SLOT
from switchgear.worker.tiny import TinySpec, make_tiny

PROMPTS = [
    "Hello, how are you today?",
    "你好，今天天气怎么样？",
    "The quick brown fox",
    "Translate: 我喜欢机器学习。",
]


async def worker_run(
    path: Path, concurrency: int, requests: int, max_tokens: int
) -> tuple[float, float, int]:
    settings = parse_settings(
        {
            "worker": {
                "model": {"model_name_or_path": str(path), "name": "bench"},
                "max_batch_size": 16,
                "batch_wait_ms": 2,
                "watch_config": False,
            }
        }
    )
    app = create_worker_app(settings)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await app[SLOT].ready()
    url = f"http://127.0.0.1:{port}/v1/completions"
    latencies: list[float] = []
    tokens = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"prompt": "warm up", "max_tokens": 2}) as r:
            await r.read()

        async def client() -> None:
            nonlocal tokens
            while not queue.empty():
                i = queue.get_nowait()
                t = time.perf_counter()
                async with session.post(
                    url,
                    json={
                        "prompt": PROMPTS[i % len(PROMPTS)],
                        "max_tokens": max_tokens,
                        "temperature": 0,
                    },
                ) as r:
                    body = await r.json()
                latencies.append(time.perf_counter() - t)
                tokens += body["usage"]["completion_tokens"]

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    await runner.cleanup()
    return tokens / wall, statistics.median(latencies), tokens


def sequential_run(path: Path, requests: int, max_tokens: int) -> tuple[float, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    with torch.no_grad():  # warm-up, as the worker gets one
        model.generate(
            **tok("warm up", return_tensors="pt"), max_new_tokens=2, pad_token_id=tok.pad_token_id
        )
    latencies, tokens = [], 0
    started = time.perf_counter()
    for i in range(requests):
        ids = tok(PROMPTS[i % len(PROMPTS)], return_tensors="pt")
        t = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                **ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id
            )
        latencies.append(time.perf_counter() - t)
        tokens += out.shape[1] - ids["input_ids"].shape[1]
    return tokens / (time.perf_counter() - started), statistics.median(latencies)


def bench(name: str, path: Path, max_tokens: int, scale: int) -> None:
    seq_tps, seq_p50 = sequential_run(path, max(2, 4 // scale * 2), max_tokens)
    print(
        f"\n{name}: sequential generate loop: {seq_tps:8.1f} tok/s, p50 {seq_p50 * 1000:7.1f} ms per request"
    )
    print(f"{'concurrency':>11}  {'tok/s':>8}  {'p50 ms':>8}  {'vs sequential':>13}")
    for c in (1, 4, 16):
        tps, p50, _ = asyncio.run(worker_run(path, c, max(2, c * 2 // scale), max_tokens))
        print(f"{c:>11}  {tps:8.1f}  {p50 * 1000:8.1f}  {tps / seq_tps:12.2f}x")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=32)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        tiny = make_tiny(Path(tmp) / "tiny", TinySpec(seed=0))
        started = time.perf_counter()
        big = make_tiny(Path(tmp) / "m100", TinySpec(seed=0, layers=16, hidden=768))
        params = sum(
            t.numel()
            for t in __import__("safetensors.torch")
            .torch.load_file(str(big / "model.safetensors"))
            .values()
        )
        print(
            f"built the {params / 1e6:.0f}M-parameter model in {time.perf_counter() - started:.1f}s; "
            f"max_tokens={args.max_tokens}, torch threads={args.threads}"
        )
        bench("tiny (2 layers, hidden 64)", tiny, args.max_tokens, 1)
        bench(f"random {params / 1e6:.0f}M (16 layers, hidden 768)", big, args.max_tokens, 2)


if __name__ == "__main__":
    main()
