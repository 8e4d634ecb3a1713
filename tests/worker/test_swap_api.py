"""The live ``/admin/swap`` and ``/admin/rollback``: integrity, reference, eval, backups, bad input."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from switchgear.plugins.hookspecs import hookimpl
from switchgear.worker.backups import ModelHistory
from switchgear.worker.gates.evals import answers
from switchgear.worker.keys import SLOT
from switchgear.worker.tiny import TinySpec
from tests.worker.conftest import _build, admin_headers, worker_settings
from tests.worker.test_gates import NAN_TENSOR, corrupt
from tests.worker.test_swap import gate, served_path, swap

FAST = {"latency_tolerance": 20.0, "latency_repeats": 2, "generation_tokens": 6}


async def completes(client: Any) -> bool:
    resp = await client.post("/v1/completions", json={"prompt": "hello", "max_tokens": 3})
    return resp.status == 200


class Blocking:
    """A loader that holds the load of one path until released (a slow checkpoint)."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)
        self.entered, self.release = threading.Event(), threading.Event()

    @hookimpl(tryfirst=True)
    def load_model(self, spec: Any) -> Any:
        if spec.model_name_or_path != self.target:
            return None
        from switchgear.worker.loading import load_pretrained

        self.entered.set()
        self.release.wait(60)
        return load_pretrained(spec)


@pytest.fixture(scope="module")
def tiny_seed2(models_dir: Path) -> Path:
    return _build(models_dir, "tiny-seed2", TinySpec(seed=2))


async def test_nan_candidate_is_refused_live_and_the_current_model_keeps_serving(
    start_worker: Any, tiny: Path, tmp_path: Path
) -> None:
    bad = corrupt(tiny, tmp_path / "nan")
    client = await start_worker(
        worker_settings(tiny, gates=FAST, model_roots=[str(tiny.parent), str(tmp_path)])
    )
    for force in (False, True):
        status, report = await swap(client, bad, force=force)
        assert status == 422 and report["failed"] == ["finite_weights"]
        assert NAN_TENSOR in report["error"]["message"] and report["forced"] == []
        assert [g["gate"] for g in report["gates"]] == ["finite_weights"]
    status, report = await swap(client, bad, force=["finite_weights"])
    assert status == 400 and report["error"]["param"] == "force"
    assert await served_path(client) == str(tiny) and await completes(client)


async def test_reference_gives_the_logit_error_of_an_onnx_candidate(
    start_worker: Any, tiny: Path, tiny_onnx: Path
) -> None:
    client = await start_worker(worker_settings(tiny, gates=FAST))
    status, report = await swap(client, tiny_onnx)
    assert status == 200, report
    assert "no PyTorch reference" in gate(report, "outputs")["detail"]
    assert "max_abs_logit_error" not in report["summary"]

    await client.post("/admin/rollback", headers=admin_headers())
    status, report = await swap(client, tiny_onnx, reference=str(tiny))
    assert status == 200, report
    outputs = gate(report, "outputs")
    assert outputs["passed"] and outputs["data"]["reference"] == str(tiny)
    assert 0 <= report["summary"]["max_abs_logit_error"] < 1e-3
    assert report["summary"]["max_abs_logit_error"] == outputs["value"]


async def test_eval_gate_in_the_live_swap(
    start_worker: Any, plugin_manager: Any, tiny: Path, tiny_seed1: Path, tmp_path: Path
) -> None:
    client = await start_worker(worker_settings(tiny, gates=FAST))
    status, report = await swap(client, tiny_seed1)
    assert status == 200 and report["summary"]["eval"]["set"] == "built-in set"
    await client.post("/admin/rollback", headers=admin_headers())

    from switchgear.settings.worker import ModelSpec
    from switchgear.worker.loading import load_bundle

    old = load_bundle(ModelSpec(model_name_or_path=str(tiny)), plugin_manager)
    prompts = ["hello", "你好", "The weather", "Translate: 我喜欢", "Numbers: 1 2 3", "def add"]
    labels = [a.rstrip("\ufffd").strip() for a in answers(old, [(p, "x") for p in prompts])]
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(
        "\n".join(
            json.dumps({"prompt": p, "label": x}) for p, x in zip(prompts, labels, strict=True)
        )
    )
    client = await start_worker(worker_settings(tiny, gates={**FAST, "eval_file": str(eval_file)}))
    status, report = await swap(client, tiny_seed1)
    assert status == 422 and report["failed"] == ["eval"]
    ev = report["summary"]["eval"]
    assert ev["set"] == str(eval_file) and ev["accuracy"]["current"] == 1.0
    assert ev["accuracy"]["candidate"] < 1.0
    status, report = await swap(client, tiny)
    assert status == 200 and report["summary"]["eval"]["accuracy"]["drop"] == 0.0


async def test_backups_on_disk_and_rollback_by_index_or_name(
    start_worker: Any, tiny: Path, tiny_seed1: Path, tiny_seed2: Path, tmp_path: Path
) -> None:
    backups = tmp_path / "backups"
    settings = worker_settings(tiny, gates=FAST, backup_dir=str(backups), backup_keep=2)
    client = await start_worker(settings)
    for path in (tiny_seed1, tiny_seed2):
        status, report = await swap(client, path)
        assert status == 200, report
    listing = (await (await client.get("/admin/backups", headers=admin_headers())).json())["data"]
    assert [b["model_name_or_path"] for b in listing] == [str(tiny_seed1), str(tiny)]
    assert len(list(backups.glob("*.json"))) == 2
    assert [b.spec.model_name_or_path for b in ModelHistory(backups, 2).entries()] == [
        str(tiny_seed1),
        str(tiny),
    ]

    resp = await client.post("/admin/rollback", json={"target": 1}, headers=admin_headers())
    report = await resp.json()
    assert resp.status == 200 and [g["gate"] for g in report["gates"]] == [
        "finite_weights",
        "finite_logits",
        "generation",
    ]
    assert await served_path(client) == str(tiny)
    resp = await client.post(
        "/admin/rollback", json={"target": str(tiny_seed1)}, headers=admin_headers()
    )
    assert resp.status == 200 and await served_path(client) == str(tiny_seed1)
    listing = (await (await client.get("/admin/backups", headers=admin_headers())).json())["data"]
    assert [b["model_name_or_path"] for b in listing] == [str(tiny), str(tiny_seed2)]
    resp = await client.post("/admin/rollback", json={"target": 7}, headers=admin_headers())
    assert resp.status == 404 and "index 7" in (await resp.json())["error"]["message"]


async def test_rollback_reruns_the_integrity_gates(
    start_worker: Any, tiny: Path, tiny_seed1: Path, tmp_path: Path
) -> None:
    first = corrupt(tiny, tmp_path / "first", value=1.0)  # a finite edit: serves fine
    client = await start_worker(
        worker_settings(first, gates=FAST, model_roots=[str(tiny.parent), str(tmp_path)])
    )
    status, _ = await swap(client, tiny_seed1)
    assert status == 200
    corrupt(tiny, first)  # the backup's checkpoint is damaged on disk after the swap
    resp = await client.post("/admin/rollback", headers=admin_headers())
    report = await resp.json()
    assert resp.status == 422 and report["failed"] == ["finite_weights"]
    assert NAN_TENSOR in gate(report, "finite_weights")["detail"]
    assert await served_path(client) == str(tiny_seed1) and await completes(client)
    assert client.app[SLOT].previous.model_name_or_path == str(first)


async def test_bad_candidates_get_a_clear_error_and_change_nothing(
    start_worker: Any, tiny: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not a checkpoint")
    client = await start_worker(
        worker_settings(tiny, gates=FAST, model_roots=[str(tiny.parent), str(broken)])
    )
    cases = [
        ({"model_name_or_path": "/etc"}, 403, "model_name_or_path", "outside the configured"),
        (
            {"model_name_or_path": str(tiny.parent / "missing")},
            400,
            "model_name_or_path",
            "does not exist",
        ),
        (
            {"model_name_or_path": str(tiny), "reference": "/etc"},
            403,
            "reference",
            "outside the configured",
        ),
        ({"model_name_or_path": str(tiny), "force": "yes"}, 400, "force", "force"),
        ({"model_name_or_path": str(broken)}, 422, None, "the candidate failed to load"),
    ]
    for body, status, param, text in cases:
        resp = await client.post("/admin/swap", json=body, headers=admin_headers())
        data = await resp.json()
        assert resp.status == status, (body, data)
        assert text in data["error"]["message"], data
        assert data["error"]["param"] == param or data["error"]["param"].startswith(f"{param}.")
        assert data["error"]["type"] in ("invalid_request_error", "permission_error")
        assert await served_path(client) == str(tiny) and await completes(client)


async def test_a_second_swap_while_one_runs_is_409(
    start_worker: Any, plugin_manager: Any, tiny: Path, tiny_seed1: Path
) -> None:
    blocking = Blocking(tiny_seed1)
    plugin_manager.register(blocking)
    client = await start_worker(worker_settings(tiny, gates=FAST))
    first = asyncio.create_task(swap(client, tiny_seed1))
    assert await asyncio.to_thread(blocking.entered.wait, 60)
    try:
        status, report = await swap(client, tiny)
        assert status == 409 and report["error"]["type"] == "conflict_error"
        resp = await client.post("/admin/rollback", headers=admin_headers())
        assert resp.status == 409
        assert await completes(client)
    finally:
        blocking.release.set()
    status, report = await first
    assert status == 200, report
