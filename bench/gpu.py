"""The model worker on a GPU: load, batching, a hot swap under load, the NaN gate, quantization.

    python bench/gpu.py [--device cuda] [--layers 12] [--hidden 2048] [--json FILE]

Builds seeded random Llama models locally (the ``make-tiny`` code path, at a larger size) and
drives the worker's own HTTP API on loopback. Each figure has a baseline from the same run:

- **load**: seconds and device memory of the worker's loader against the weights' own bytes;
- **batching**: tokens/s of the batched worker at several concurrencies against a sequential
  ``model.generate`` loop on the same device and dtype;
- **swap**: a hot swap to another seed under load (the shipped gates), its gate times, the
  failed requests, and device memory before, at peak and after against one model's size;
  then a checkpoint with one NaN weight, which must be refused while the model keeps serving;
- **quantization**: ``quanto-int8`` against fp16: memory and tokens/s at one concurrency.

``--device cpu --layers 2 --hidden 64`` runs the whole script on a CPU as a check of itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from switchgear.settings import parse_settings  # noqa: E402
from switchgear.worker.keys import SLOT  # noqa: E402
from switchgear.worker.tiny import TinySpec, make_tiny  # noqa: E402

ADMIN = "bench-admin"
PROMPTS = [
    "Hello, how are you today?",
    "你好，今天天气怎么样？",
    "The quick brown fox",
    "Translate: 我喜欢机器学习。",
]
NAN_TENSOR = "model.layers.0.self_attn.q_proj.weight"


def environment(device: str) -> dict[str, Any]:
    import torch
    import transformers

    env: dict[str, Any] = {"torch": torch.__version__, "transformers": transformers.__version__}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        env.update(
            gpu=props.name,
            capability=f"{props.major}.{props.minor}",
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
        )
    return env


def device_bytes(device: str) -> dict[str, int]:
    import torch

    if not device.startswith("cuda"):
        return {}
    torch.cuda.synchronize()
    return {"allocated": torch.cuda.memory_allocated(), "peak": torch.cuda.max_memory_allocated()}


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def settings_for(path: Path, device: str, **worker: Any) -> Any:
    model = {"model_name_or_path": str(path), "name": "bench", "device": device}
    model.update(worker.pop("model", {}))
    return parse_settings(
        {
            "auth": {"admin_key": ADMIN},
            "worker": {
                "model": model,
                "max_batch_size": 64,
                "batch_wait_ms": 2,
                "watch_config": False,
                "model_roots": [str(path.parent)],
                **worker,
            },
        }
    )


class Worker:
    """A worker app on a loopback port, its model loaded."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    async def __aenter__(self) -> Worker:
        from switchgear.worker.app import create_worker_app

        started = time.perf_counter()
        self.app = create_worker_app(self.settings)
        self.runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        await self.app[SLOT].ready()
        self.load_s = time.perf_counter() - started
        self.url = f"http://127.0.0.1:{port}"
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.session.close()
        await self.runner.cleanup()

    async def complete(self, prompt: str, max_tokens: int, stream: bool = False) -> tuple[int, int]:
        body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": stream}
        async with self.session.post(self.url + "/v1/completions", json=body) as r:
            if stream:
                text = await r.text()
                return r.status, text.count("data: {")
            data = await r.json()
            return r.status, data.get("usage", {}).get("completion_tokens", 0)

    async def load(self, concurrency: int, requests: int, max_tokens: int) -> dict[str, float]:
        await self.complete("warm up", 2)
        queue = list(range(requests))
        latencies: list[float] = []
        tokens = 0

        async def user() -> None:
            nonlocal tokens
            while queue:
                i = queue.pop()
                t = time.perf_counter()
                status, n = await self.complete(PROMPTS[i % len(PROMPTS)], max_tokens)
                assert status == 200, status
                latencies.append(time.perf_counter() - t)
                tokens += n

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        return {
            "concurrency": concurrency,
            "tok_s": tokens / wall,
            "p50_ms": statistics.median(latencies) * 1000,
            "requests": requests,
        }

    async def swap(self, path: Path) -> tuple[int, dict[str, Any]]:
        async with self.session.post(
            self.url + "/admin/swap",
            json={"model_name_or_path": str(path)},
            headers={"Authorization": f"Bearer {ADMIN}"},
        ) as r:
            return r.status, await r.json()


def sequential(path: Path, device: str, requests: int, max_tokens: int) -> dict[str, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device).eval()
    latencies, tokens = [], 0
    with torch.no_grad():
        model.generate(
            **tok("warm up", return_tensors="pt").to(device),
            max_new_tokens=2,
            pad_token_id=tok.pad_token_id,
        )
        started = time.perf_counter()
        for i in range(requests):
            ids = tok(PROMPTS[i % len(PROMPTS)], return_tensors="pt").to(device)
            t = time.perf_counter()
            out = model.generate(
                **ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id
            )
            latencies.append(time.perf_counter() - t)
            tokens += out.shape[1] - ids["input_ids"].shape[1]
        wall = time.perf_counter() - started
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {"tok_s": tokens / wall, "p50_ms": statistics.median(latencies) * 1000}


def nan_copy(src: Path, dst: Path) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    state = load_file(dst / "model.safetensors")
    state[NAN_TENSOR][0, 0] = float("nan")
    save_file(state, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


async def swap_under_load(w: Worker, target: Path, device: str, max_tokens: int) -> dict[str, Any]:
    before = device_bytes(device)
    reset_peak(device)
    statuses: list[int] = []
    done = asyncio.Event()

    async def user(i: int) -> None:
        while not done.is_set():
            status, _ = await w.complete(PROMPTS[i % len(PROMPTS)], max_tokens, stream=i % 2 == 0)
            statuses.append(status)

    users = [asyncio.create_task(user(i)) for i in range(8)]
    started = time.perf_counter()
    status, report = await w.swap(target)
    seconds = time.perf_counter() - started
    done.set()
    await asyncio.gather(*users)
    return {
        "status": status,
        "ok": report.get("ok"),
        "seconds": round(seconds, 2),
        "failed_gates": report.get("failed"),
        "gates": {
            g["gate"]: [g["passed"], round(g.get("seconds") or 0.0, 3)]
            for g in report.get("gates", [])
        },
        "requests": len(statuses),
        "failed_requests": sum(s != 200 for s in statuses),
        "memory_before": before,
        "memory_after": device_bytes(device),
        "summary": report.get("summary"),
    }


async def main_async(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"environment": environment(args.device)}
    t = time.perf_counter()
    spec = TinySpec(seed=0, layers=args.layers, hidden=args.hidden)
    big0 = make_tiny(root / "m-seed0", spec)
    big1 = make_tiny(root / "m-seed1", TinySpec(seed=1, layers=args.layers, hidden=args.hidden))
    bad = nan_copy(big0, root / "m-nan")
    weights = (big0 / "model.safetensors").stat().st_size
    params = weights // 4  # saved as fp32
    out["model"] = {
        "params_m": round(params / 1e6),
        "layers": args.layers,
        "hidden": args.hidden,
        "build_s": round(time.perf_counter() - t, 1),
    }
    print(
        f"models: {params / 1e6:.0f}M parameters, built in {out['model']['build_s']} s", flush=True
    )

    out["sequential"] = sequential(big0, args.device, args.sequential, args.max_tokens)
    print(
        f"sequential generate: {out['sequential']['tok_s']:.1f} tok/s, "
        f"p50 {out['sequential']['p50_ms']:.0f} ms",
        flush=True,
    )

    reset_peak(args.device)
    async with Worker(settings_for(big0, args.device)) as w:
        mem = device_bytes(args.device)
        out["load"] = {
            "seconds": round(w.load_s, 2),
            "device_memory": mem,
            "fp16_weight_bytes": params * 2,
        }
        print(f"worker load: {w.load_s:.1f} s, device memory {mem}", flush=True)
        rows = []
        for c in args.concurrency:
            row = await w.load(c, c * args.rounds, args.max_tokens)
            row["vs_sequential"] = row["tok_s"] / out["sequential"]["tok_s"]
            rows.append(row)
            print(
                f"  c={c:<3} {row['tok_s']:9.1f} tok/s  p50 {row['p50_ms']:7.0f} ms  "
                f"{row['vs_sequential']:6.2f}x sequential",
                flush=True,
            )
        out["batching"] = rows

        try:
            out["swap"] = await swap_under_load(w, big1, args.device, args.max_tokens)
            print(f"swap under load: {json.dumps(out['swap'])}", flush=True)
            status, report = await w.swap(bad)
            served = await w.complete("still there?", 4)
            out["nan_swap"] = {
                "status": status,
                "failed": report.get("failed"),
                "still_serving": served[0] == 200,
            }
            print(f"NaN checkpoint: {out['nan_swap']}", flush=True)
        except Exception as exc:  # a bench reports a failed step and goes on to the next
            out["swap_error"] = repr(exc)
            traceback.print_exc()
    try:
        quant = settings_for(big0, args.device, model={"quantization": "quanto-int8"})
        async with Worker(quant) as w:
            c = args.quant_concurrency
            row = await w.load(c, c * args.rounds, args.max_tokens)
            out["quanto_int8"] = {
                "load_s": round(w.load_s, 2),
                "device_memory": device_bytes(args.device),
                **row,
            }
        fp16 = next((r for r in out["batching"] if r["concurrency"] == c), None)
        if fp16:
            out["quanto_int8"]["vs_fp16_tok_s"] = out["quanto_int8"]["tok_s"] / fp16["tok_s"]
        print(f"quanto-int8: {json.dumps(out['quanto_int8'])}", flush=True)
    except Exception as exc:
        out["quanto_int8_error"] = repr(exc)
        traceback.print_exc()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 64]
    )
    ap.add_argument("--rounds", type=int, default=3, help="requests per client")
    ap.add_argument("--sequential", type=int, default=8, help="requests of the sequential loop")
    ap.add_argument("--quant-concurrency", type=int, default=8)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        out = asyncio.run(main_async(args, Path(tmp)))
    text = json.dumps(out, indent=1, default=str)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
