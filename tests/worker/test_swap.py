"""Hot swap: verification gates, no dropped request under load, rollback, config watch."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import yaml

from switchgear.plugins.hookspecs import hookimpl
from switchgear.worker.keys import SLOT, SWAP_LISTENERS
from tests.worker.conftest import ADMIN, admin_headers, worker_settings

RELAXED = {"gates": {"latency_tolerance": 20.0, "latency_repeats": 2, "generation_tokens": 6}}
ORDER = [
    "finite_weights",
    "finite_logits",
    "generation",
    "architecture",
    "tokenizer",
    "weights",
    "outputs",
    "latency",
    "eval",
]


def gate(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(g for g in report["gates"] if g["gate"] == name)


class Tamper:
    """A loader plugin that changes what it loads for one path (a buggy or slow loader)."""

    def __init__(self, target: Path, *, corrupt: bool = False, delay_s: float = 0.0) -> None:
        self.target, self.corrupt, self.delay_s = str(target), corrupt, delay_s

    @hookimpl(tryfirst=True)
    def load_model(self, spec: Any) -> Any:
        if spec.model_name_or_path != self.target:
            return None
        import torch

        from switchgear.worker.loading import load_pretrained

        bundle = load_pretrained(spec)
        if self.corrupt:
            with torch.no_grad():
                bundle.model.model.layers[1].mlp.down_proj.weight[0, 0] += 0.01
        if self.delay_s:
            forward, delay = bundle.model.forward, self.delay_s

            def slow_forward(*args: Any, **kwargs: Any) -> Any:
                time.sleep(delay)  # simulates a slower model, not synchronisation
                return forward(*args, **kwargs)

            bundle.model.forward = slow_forward
        return bundle


async def swap(client: Any, path: Path, **extra: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.post(
        "/admin/swap", json={"model_name_or_path": str(path), **extra}, headers=admin_headers()
    )
    return resp.status, await resp.json()


async def served_path(client: Any) -> str:
    return (await (await client.get("/v1/models")).json())["data"][0]["metadata"]["path"]


async def test_hot_swap_under_load_drops_nothing(
    start_worker: Any, tiny: Path, tiny_seed1: Path
) -> None:
    client = await start_worker(worker_settings(tiny, **RELAXED))
    done = asyncio.Event()
    statuses: list[int] = []
    swapped: list[dict[str, Any]] = []
    client.app[SWAP_LISTENERS].append(lambda app, report: swapped.append(report))

    async def user(i: int) -> None:
        while True:
            finished = done.is_set()
            stream = i % 2 == 0
            resp = await client.post(
                "/v1/completions", json={"prompt": f"hello {i}", "max_tokens": 8, "stream": stream}
            )
            await resp.read()
            statuses.append(resp.status)
            if finished:
                return

    users = [asyncio.create_task(user(i)) for i in range(6)]
    status, report = await swap(client, tiny_seed1)
    done.set()
    await asyncio.gather(*users)
    assert status == 200, report
    assert report["ok"] and [g["gate"] for g in report["gates"]] == ORDER
    assert statuses and set(statuses) == {200}
    assert await served_path(client) == str(tiny_seed1)
    assert swapped and swapped[0]["candidate"] == "tiny"

    resp = await client.post("/admin/rollback", headers=admin_headers())
    assert resp.status == 200 and await served_path(client) == str(tiny)
    assert client.app[SLOT].previous.model_name_or_path == str(tiny_seed1)
    assert [g["gate"] for g in (await resp.json())["gates"]] == ORDER[:3]


async def test_drain_mode_swap_keeps_requests(
    start_worker: Any, tiny: Path, tiny_seed1: Path
) -> None:
    client = await start_worker(worker_settings(tiny, swap_mode="drain", **RELAXED))
    pending = [
        asyncio.create_task(client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 16}))
        for _ in range(4)
    ]
    status, report = await swap(client, tiny_seed1)
    after = await client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 4})
    assert status == 200, report
    assert [r.status for r in await asyncio.gather(*pending)] == [200] * 4 and after.status == 200
    # measured before the drain unloaded the current model: unpaired, but still a comparison
    latency = gate(report, "latency")["data"]
    assert latency["interleaved"] is False and latency["current_median_s"] > 0
    assert gate(report, "architecture")["passed"] and gate(report, "eval")["passed"]


async def test_other_vocabulary_needs_architecture_and_tokenizer_forced(
    start_worker: Any, tiny: Path, tiny_other_vocab: Path
) -> None:
    client = await start_worker(worker_settings(tiny, **RELAXED))
    status, report = await swap(client, tiny_other_vocab)
    assert status == 422 and report["failed"] == ["architecture", "tokenizer"]
    assert report["error"]["code"] == "swap_refused"
    assert "vocab_size 1024 -> 600" in gate(report, "architecture")["detail"]
    assert report["summary"]["architecture_diff"] == {
        "vocab_size": {"current": 1024, "candidate": 600}
    }
    assert "vocabulary differs" in gate(report, "tokenizer")["detail"]
    assert await served_path(client) == str(tiny)
    status, report = await swap(client, tiny_other_vocab, force=["tokenizer"])
    assert status == 422 and report["failed"] == ["architecture"]
    status, report = await swap(client, tiny_other_vocab, force=True)
    assert status == 200 and report["forced"] == ["architecture", "tokenizer"]


async def test_weights_gate_names_the_corrupted_tensor(
    start_worker: Any, plugin_manager: Any, tiny: Path, tiny_seed1: Path
) -> None:
    plugin_manager.register(Tamper(tiny_seed1, corrupt=True))
    client = await start_worker(worker_settings(tiny, **RELAXED))
    status, report = await swap(client, tiny_seed1)
    assert status == 422 and report["failed"] == ["weights"]
    weights = gate(report, "weights")
    assert "model.layers.1.mlp.down_proj.weight" in weights["detail"]
    assert abs(weights["value"] - 0.01) < 1e-3
    assert await served_path(client) == str(tiny)


async def test_weights_gate_compares_in_the_dtype_the_candidate_is_served_in(
    start_worker: Any, plugin_manager: Any, tiny: Path, tiny_seed1: Path
) -> None:
    # fp32 on disk, fp16 when served (the CUDA default): rounding is not a difference, a
    # changed weight still is.
    client = await start_worker(worker_settings(tiny, **RELAXED))
    status, report = await swap(client, tiny_seed1, dtype="fp16")
    assert status == 200, report
    assert gate(report, "weights")["passed"] and gate(report, "weights")["value"] == 0.0
    await client.post("/admin/rollback", headers=admin_headers())
    plugin_manager.register(Tamper(tiny_seed1, corrupt=True))
    status, report = await swap(client, tiny_seed1, dtype="fp16")
    assert status == 422 and report["failed"] == ["weights"]
    assert "model.layers.1.mlp.down_proj.weight" in gate(report, "weights")["detail"]


async def test_outputs_gate_refuses_a_too_different_quantization(
    start_worker: Any, tiny: Path, tiny_seed1: Path
) -> None:
    settings = worker_settings(tiny, gates={"logit_tolerance": 1e-7, "latency_tolerance": 20.0})
    client = await start_worker(settings)
    status, report = await swap(client, tiny_seed1, quantization="quanto-int4")
    assert status == 422 and report["failed"] == ["outputs"]
    assert gate(report, "outputs")["value"] > 1e-7
    assert report["summary"]["max_abs_logit_error"] == gate(report, "outputs")["value"]


async def test_latency_gate_refuses_a_slow_candidate(
    start_worker: Any, plugin_manager: Any, tiny: Path, tiny_seed1: Path
) -> None:
    # one probe: a round is one forward pass, which the delay makes several times slower
    plugin_manager.register(Tamper(tiny_seed1, delay_s=0.1))
    gates = {"latency_tolerance": 1.0, "latency_repeats": 2, "generation_tokens": 4}
    client = await start_worker(worker_settings(tiny, gates={**gates, "probes": ["Hello"]}))
    status, report = await swap(client, tiny_seed1)
    assert status == 422 and report["failed"] == ["latency"], gate(report, "latency")
    latency = gate(report, "latency")
    assert latency["value"] > 1.0 and latency["data"]["interleaved"]
    assert report["summary"]["latency"]["lower"] > 2.0
    status, report = await swap(client, tiny_seed1, force=["latency"])
    assert status == 200 and report["forced"] == ["latency"]


async def test_rollback_without_history_is_404(client: Any) -> None:
    resp = await client.post("/admin/rollback", headers=admin_headers())
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "no_backup"


async def test_config_change_triggers_a_swap(
    start_worker: Any, tiny: Path, tiny_seed1: Path, tmp_path: Path
) -> None:
    from switchgear.settings import load_settings

    config = tmp_path / "worker.yaml"
    data: dict[str, Any] = {
        "auth": {"admin_key": ADMIN},
        "worker": {
            "model": {"model_name_or_path": str(tiny), "name": "tiny"},
            "watch_interval_s": 0.05,
            **RELAXED,
        },
    }
    config.write_text(yaml.safe_dump(data))
    client = await start_worker(load_settings(config), config_path=str(config))
    swapped = asyncio.Event()
    client.app[SWAP_LISTENERS].append(lambda app, report: swapped.set())
    data["worker"]["model"]["model_name_or_path"] = str(tiny_seed1)
    config.write_text(yaml.safe_dump(data))
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    await asyncio.wait_for(swapped.wait(), 60)
    assert await served_path(client) == str(tiny_seed1)


async def test_hook_verify_swap_third_party_gate_refuses(
    start_worker: Any, plugin_manager: Any, tiny: Path, tiny_seed1: Path
) -> None:
    from switchgear.worker.gates import GateResult

    class NoSeedOne:
        @hookimpl
        def verify_swap(self, current: Any, candidate: Any, settings: Any) -> Any:
            bad = candidate.bundle.path == tiny_seed1
            return GateResult("policy", not bad, "seed-1 models are banned" if bad else "ok")

    plugin_manager.register(NoSeedOne())
    client = await start_worker(worker_settings(tiny, **RELAXED))
    status, report = await swap(client, tiny_seed1)
    assert status == 422 and report["failed"] == ["policy"]
    assert [g["gate"] for g in report["gates"]] == ["policy", *ORDER]
    status, report = await swap(client, tiny_seed1, force=["policy"])
    assert status == 200 and report["forced"] == ["policy"]


async def test_extra_contexts_and_worker_info(
    aiohttp_client: Any, plugin_manager: Any, tiny: Path
) -> None:
    from switchgear.worker.app import create_worker_app, model_version, worker_info

    seen: list[dict[str, Any]] = []

    async def registration(app: Any) -> Any:
        await app[SLOT].ready()
        seen.append(worker_info(app))
        yield

    app = create_worker_app(
        worker_settings(tiny), plugin_manager=plugin_manager, extra_contexts=[registration]
    )
    await aiohttp_client(app)
    assert seen == [
        {
            "status": "ready",
            "model": "tiny",
            "quantization": None,
            "context_length": 512,
            "languages": ["en", "zh"],
            "device": "cpu",
            "dtype": "fp32",
            "format": "safetensors",
            "supports_continuation": "true",
            "version": model_version(app[SLOT].spec),
        }
    ]
