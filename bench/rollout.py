"""A progressive rollout across three tiny workers under steady load, through the gateway.

    .venv/bin/python bench/rollout.py [--quick] [--clients 4] [--steps 10,50]

Starts three workers (tiny model, seed 0) and a gateway on loopback in this process, keeps
``--clients`` OpenAI-SDK clients sending chat completions, measures the throughput for a
baseline period, then rolls the seed-1 model through the workers (``POST /admin/rollouts``)
and prints: the rollout's state and duration, requests served and failed during it, and
the throughput during the rollout as a ratio of the baseline measured in the same run.
``--quick``: shorter steps and baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ADMIN = "bench-admin"


async def _load(sdk: Any, counts: dict[str, int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await sdk.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3
            )
            counts["ok"] += 1
        except Exception:
            counts["failed"] += 1


async def _workers(root: Path, n: int) -> list[Any]:
    from aiohttp.test_utils import TestServer

    from switchgear.plugins.manager import make_plugin_manager
    from switchgear.settings import parse_settings
    from switchgear.worker.app import create_worker_app, register_gates
    from switchgear.worker.keys import SLOT

    servers = []
    for _ in range(n):
        pm = make_plugin_manager(
            load_entrypoints=False, builtins=["switchgear.default_plugins.quantization"]
        )
        register_gates(pm)
        settings = parse_settings(
            {
                "auth": {"admin_key": ADMIN},
                "worker": {
                    "model": {"model_name_or_path": str(root / "a"), "name": "tiny"},
                    "batch_wait_ms": 1,
                    "watch_config": False,
                    "model_roots": [str(root)],
                    "gates": {"latency_tolerance": 20.0, "latency_repeats": 2},
                },
            }
        )
        server = TestServer(create_worker_app(settings, plugin_manager=pm), host="127.0.0.1")
        await server.start_server()
        await server.app[SLOT].ready()
        servers.append(server)
    return servers


async def run(args: argparse.Namespace) -> None:
    import aiohttp
    import openai

    from switchgear.plugins.manager import make_plugin_manager
    from switchgear.proxy.app import create_app
    from switchgear.proxy.server import start
    from switchgear.settings import parse_settings
    from switchgear.worker.tiny import TinySpec, make_tiny

    root = Path(tempfile.mkdtemp(prefix="sg-rollout-"))
    make_tiny(root / "a", TinySpec(seed=0))
    make_tiny(root / "b", TinySpec(seed=1))
    os.environ["SWITCHGEAR_WORKER_ADMIN_KEY"] = ADMIN
    workers = await _workers(root, 3)
    settings = parse_settings(
        {
            "auth": {"admin_key": ADMIN},
            "backends": [
                {"model": "tiny", "url": str(w.make_url("/v1")), "id": f"w{i}"}
                for i, w in enumerate(workers)
            ],
            "timeouts": {"ttft": 60.0, "total": 120.0},
        }
    )
    pm = make_plugin_manager(
        load_entrypoints=False,
        builtins=[
            "switchgear.default_plugins.static_discovery",
            "switchgear.default_plugins.balancing",
            "switchgear.default_plugins.openai_adapter",
        ],
    )
    runner = await start(
        create_app(settings, plugin_manager=pm), settings, host="127.0.0.1", port=0
    )
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    sdk = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    counts, stop = {"ok": 0, "failed": 0}, asyncio.Event()
    tasks = [asyncio.create_task(_load(sdk, counts, stop)) for _ in range(args.clients)]
    baseline_s = 3.0 if args.quick else 10.0
    await asyncio.sleep(1.0)  # warm-up
    before = dict(counts)
    await asyncio.sleep(baseline_s)
    base_rps = (counts["ok"] - before["ok"]) / baseline_s
    steps = [float(s) for s in args.steps.split(",")]
    body = {
        "model": "tiny",
        "path": str(root / "b"),
        "steps": steps,
        "options": {"step_seconds": 1.5 if args.quick else 5.0, "min_samples": 6},
    }
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        before, t0 = dict(counts), time.perf_counter()
        async with http.post(url + "/admin/rollouts", json=body) as r:
            rid = (await r.json())["id"]
        while True:
            async with http.get(url + "/admin/rollouts") as r:
                row = next(x for x in (await r.json())["data"] if x["id"] == rid)
            if row["state"] != "running":
                break
            await asyncio.sleep(0.1)
        took = time.perf_counter() - t0
    served, failed = counts["ok"] - before["ok"], counts["failed"] - before["failed"]
    stop.set()
    await asyncio.gather(*tasks)
    await sdk.close()
    await runner.cleanup()
    for w in workers:
        await w.close()
    print(f"rollout of 3 workers, steps {steps}: {row['state']} {row['reason'] or ''}")
    print(f"duration: {took:.1f} s")
    print(f"requests during the rollout: {served} served, {failed} failed")
    print(f"baseline throughput: {base_rps:.1f} req/s ({args.clients} clients)")
    print(f"throughput during the rollout: {served / took / base_rps:.2f}x the baseline")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--steps", default="10,50")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(1)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
