"""Benchmark: does the worker's event loop stay free while it prepares a huge prompt?

A tiny-model worker on loopback; ``/health`` is polled back to back, first with nothing
else in flight (the baseline), then while one hostile request is being prepared: a 3.9 MB
text prompt to ``/v1/completions`` and 60,000 messages to ``/v1/chat/completions`` (both
answered 400 ``context_length_exceeded``). Prints the ``/health`` p50 and max latency of
each phase and the ratio of the max to the baseline's max. The client runs on the worker's
loop, so the bodies are encoded before a phase starts.

    .venv/bin/python bench/worker_loop.py [--prompt-mb 3.9] [--messages 60000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from switchgear.settings import parse_settings  # noqa: E402
from switchgear.worker.app import create_worker_app  # noqa: E402
from switchgear.worker.keys import SLOT  # noqa: E402
from switchgear.worker.tiny import TinySpec, make_tiny  # noqa: E402


async def poll_health(
    session: aiohttp.ClientSession, url: str, until: asyncio.Event
) -> list[float]:
    took: list[float] = []
    while not until.is_set():
        t0 = time.perf_counter()
        async with session.get(url + "/health") as r:
            await r.read()
        took.append(time.perf_counter() - t0)
    return took


async def phase(
    session: aiohttp.ClientSession, url: str, path: str | None, body: Any, idle_s: float
) -> tuple[list[float], int | None, float]:
    done = asyncio.Event()
    poller = asyncio.create_task(poll_health(session, url, done))
    status = None
    t0 = time.perf_counter()
    if path is None:
        await asyncio.sleep(idle_s)  # the baseline: polling alone for a fixed time
    else:
        async with session.post(url + path, data=body) as r:
            status = r.status
            await r.read()
    elapsed = time.perf_counter() - t0
    done.set()
    return await poller, status, elapsed


def row(name: str, took: list[float], base_max: float, status: int | None, s: float) -> str:
    p50, worst = statistics.median(took) * 1000, max(took) * 1000
    return (
        f"{name:<28} {len(took):>6} polls  p50 {p50:7.2f} ms  max {worst:8.2f} ms  "
        f"max/baseline {max(took) / base_max:6.1f}x  request {s:5.2f} s -> {status}"
    )


async def main(prompt_mb: float, messages: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make_tiny(path, TinySpec(seed=0))
        settings = parse_settings(
            {
                "limits": {"max_body_bytes": 64 * 1024 * 1024},
                "worker": {
                    "model": {"model_name_or_path": str(path), "name": "bench"},
                    "watch_config": False,
                },
            }
        )
        app = create_worker_app(settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        await app[SLOT].ready()
        words = int(prompt_mb * 1e6 / 6)
        # Encoded up front: the client shares the worker's loop here, and must not stall it.
        prompt = orjson.dumps({"prompt": "hello " * words, "max_tokens": 1})
        chat = orjson.dumps(
            {"messages": [{"role": "user", "content": f"message {i}"} for i in range(messages)]}
        )
        try:
            async with aiohttp.ClientSession() as session:
                base, _, idle = await phase(session, url, None, None, 2.0)
                print(row("idle (baseline)", base, max(base), None, idle))
                for name, p, body in (
                    (f"{prompt_mb} MB prompt", "/v1/completions", prompt),
                    (f"{messages} messages", "/v1/chat/completions", chat),
                ):
                    took, status, s = await phase(session, url, p, body, 0)
                    print(row(name, took, max(base), status, s))
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt-mb", type=float, default=3.9)
    ap.add_argument("--messages", type=int, default=60_000)
    args = ap.parse_args()
    asyncio.run(main(args.prompt_mb, args.messages))
