"""Benchmark: the cost of the worker's sampling options, as ratios against a plain run
measured in the same process: constrained JSON decoding (lm-format-enforcer) and logprobs
against unconstrained sampling, and ``n`` choices in one batch against ``n`` requests one
after another.

    .venv/bin/python bench/sampling.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
import warnings
from pathlib import Path

from switchgear.plugins.manager import make_plugin_manager
from switchgear.settings.worker import ModelSpec
from switchgear.worker.decode import eos_ids
from switchgear.worker.engine import Engine, SamplingParams
from switchgear.worker.loading import load_bundle
from switchgear.worker.structured import Constraint
from switchgear.worker.tiny import TinySpec, make_tiny

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z]{1,6}$"},
        "ok": {"type": "boolean"},
    },
    "required": ["name", "ok"],
}


async def tokens_per_s(engine: Engine, ids: list[int], params: list[SamplingParams]) -> float:
    started, tokens = time.perf_counter(), 0
    async for _, ev in engine.generate_many(ids, params):
        if ev.finish_reason:
            tokens += ev.completion_tokens
    return tokens / (time.perf_counter() - started)


async def run(quick: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = make_tiny(Path(tmp) / "m", TinySpec(hidden=64 if quick else 256, layers=2))
        pm = make_plugin_manager(
            load_entrypoints=False, builtins=["switchgear.default_plugins.quantization"]
        )
        engine = Engine(load_bundle(ModelSpec(model_name_or_path=str(path)), pm))
        b = engine.bundle
        ids = b.tokenizer("Hello, how are you today?")["input_ids"]
        base = SamplingParams(max_tokens=32 if quick else 96, seed=1)
        rounds = 2 if quick else 5
        Constraint(b.tokenizer, SCHEMA, eos_ids(b))  # the token table, built once
        figures: dict[str, list[float]] = {"plain": [], "json": [], "logprobs": []}
        n = 4
        batched, serial = [], []
        for r in range(rounds):
            seeded = dataclasses.replace(base, seed=r)
            figures["plain"].append(await tokens_per_s(engine, ids, [seeded]))
            c = Constraint(b.tokenizer, SCHEMA, eos_ids(b))
            figures["json"].append(
                await tokens_per_s(engine, ids, [dataclasses.replace(seeded, constraint=c)])
            )
            figures["logprobs"].append(
                await tokens_per_s(engine, ids, [dataclasses.replace(seeded, logprobs=5)])
            )
            started = time.perf_counter()
            await tokens_per_s(
                engine, ids, [dataclasses.replace(seeded, seed=r + i) for i in range(n)]
            )
            batched.append(time.perf_counter() - started)
            started = time.perf_counter()
            for i in range(n):
                await tokens_per_s(engine, ids, [dataclasses.replace(seeded, seed=r + i)])
            serial.append(time.perf_counter() - started)
        engine.close()
    plain = sorted(figures["plain"])[len(figures["plain"]) // 2]
    for name, values in figures.items():
        mid = sorted(values)[len(values) // 2]
        print(f"{name:9s} {mid:9.1f} tokens/s  ratio to plain {mid / plain:5.2f}")
    print(
        f"n={n} in one batch: {sorted(batched)[rounds // 2]:.3f}s, "
        f"{n} one after another: {sorted(serial)[rounds // 2]:.3f}s, "
        f"speed-up {sorted(serial)[rounds // 2] / sorted(batched)[rounds // 2]:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
