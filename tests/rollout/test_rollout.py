"""Progressive rollouts across three real tiny workers under steady load."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from switchgear.proxy import keys
from switchgear.worker.app import worker_info
from tests.helpers import poll_until
from tests.rollout.conftest import ADMIN_HEADERS, Load
from tests.worker.test_gates import corrupt

GW_ADMIN = {"Authorization": "Bearer gw-admin"}
OPTIONS = {"step_seconds": 1.5, "min_samples": 10, "latency_ratio": 5.0}


async def _start(http: aiohttp.ClientSession, fleet: Any, path: Path, **extra: Any) -> Any:
    body = {"model": "tiny", "path": str(path), "steps": [10, 50], "options": OPTIONS, **extra}
    async with http.post(fleet.gateway.url + "/admin/rollouts", json=body, headers=GW_ADMIN) as r:
        return r.status, await r.json()


async def _finished(http: aiohttp.ClientSession, fleet: Any, rid: str, within: float) -> Any:
    async def done() -> Any:
        async with http.get(fleet.gateway.url + "/admin/rollouts", headers=GW_ADMIN) as r:
            row = next(x for x in (await r.json())["data"] if x["id"] == rid)
        return row if row["state"] != "running" else None

    return await poll_until(done, within, f"rollout {rid} finishing", interval=0.1)


async def test_rolling_swap_of_three_workers_under_load_fails_no_request(
    fleet: Any, http: aiohttp.ClientSession, tiny_seed1: Path
) -> None:
    f = await fleet()
    versions = [worker_info(w.app)["version"] for w in f.workers]
    load = Load(f.gateway.openai()).start()
    await poll_until(lambda: load.ok >= 10, 30, "load running")
    status, ro = await _start(http, f, tiny_seed1)
    assert status == 202 and ro["state"] == "running", ro
    # a second rollout of the same model while this one runs
    status, err = await _start(http, f, tiny_seed1)
    assert status == 409 and err["error"]["code"] == "rollout_running", err
    final = await _finished(http, f, ro["id"], 120)
    served = load.ok
    await load.stop()
    assert final["state"] == "succeeded", (final["reason"], final["workers"])
    assert load.failed == [], load.failed[:3]
    assert served > 30
    assert [w["phase"] for w in final["workers"]] == ["done"] * 3
    for w in final["workers"]:
        assert [s["share"] for s in w["figures"]] == [10, 50]
        assert w["figures"][-1]["candidate_requests"] > 0
    for i in range(3):
        assert await f.served_path(http, i) == str(tiny_seed1)
    # the version in each worker's registration meta follows the model
    after = [worker_info(w.app)["version"] for w in f.workers]
    assert len(set(after)) == 1 and not set(after) & set(versions), (versions, after)


async def test_slow_candidate_is_rolled_back_at_the_first_worker(
    fleet: Any, http: aiohttp.ClientSession, tiny: Path, tiny_seed1: Path
) -> None:
    f = await fleet()
    load = Load(f.gateway.openai()).start()
    await poll_until(lambda: load.ok >= 10, 30, "load running")
    status, ro = await _start(http, f, tiny_seed1)
    assert status == 202

    async def stepping() -> bool:
        async with http.get(f.gateway.url + "/admin/rollouts", headers=GW_ADMIN) as r:
            row = (await r.json())["data"][0]
        return bool(row["workers"][0]["phase"] == "step")

    await poll_until(stepping, 60, "first worker swapped", interval=0.05)
    async with http.post(
        f.worker_url(0) + "/admin/faults", json={"delay_ms": 400}, headers=ADMIN_HEADERS
    ) as r:
        assert r.status == 200
    final = await _finished(http, f, ro["id"], 60)
    await load.stop()
    assert final["state"] == "rolled_back", final
    assert "w0" in final["reason"] and "latency" in final["reason"], final["reason"]
    assert [w["phase"] for w in final["workers"]] == ["rolled_back", "pending", "pending"]
    assert load.failed == [], load.failed[:3]
    assert [await f.served_path(http, i) for i in range(3)] == [str(tiny)] * 3


async def test_nan_candidate_is_refused_at_the_first_worker(
    fleet: Any, http: aiohttp.ClientSession, tiny: Path, tmp_path: Path
) -> None:
    f = await fleet()
    bad = corrupt(tiny, tmp_path / "nan")
    load = Load(f.gateway.openai()).start()
    status, ro = await _start(http, f, bad)
    assert status == 202
    final = await _finished(http, f, ro["id"], 60)
    await load.stop()
    assert final["state"] == "refused", final
    assert "finite_weights" in final["reason"] or "NaN" in final["reason"], final["reason"]
    assert [w["phase"] for w in final["workers"]] == ["refused", "pending", "pending"]
    assert load.failed == []
    assert [await f.served_path(http, i) for i in range(3)] == [str(tiny)] * 3


async def test_bad_rollout_requests_are_openai_shaped_4xx(
    fleet: Any, http: aiohttp.ClientSession, tiny_seed1: Path
) -> None:
    f = await fleet()
    url = f.gateway.url + "/admin/rollouts"
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"model": "nope", "path": str(tiny_seed1)}, 404, "model"),
        ({"model": "tiny"}, 400, "path"),
        ({"model": "tiny", "path": str(tiny_seed1), "steps": [0]}, 400, "steps"),
        ({"model": "tiny", "path": str(tiny_seed1), "options": {"x": 1}}, 400, "options.x"),
    ]
    for body, want, param in cases:
        async with http.post(url, json=body, headers=GW_ADMIN) as r:
            got = await r.json()
            assert r.status == want and got["error"]["param"] == param, (body, got)
    async with http.post(url, json={"model": "tiny", "path": "/etc"}, headers={}) as r:
        assert r.status == 401


async def test_a_bad_candidate_is_refused_before_any_worker_is_drained(
    fleet: Any, http: aiohttp.ClientSession, tiny: Path, tmp_path: Path
) -> None:
    """Every worker is asked first: outside the roots 403, missing 400, no weights or an
    unreadable config 422, each with the worker's reason; no rollout starts."""
    import shutil

    f = await fleet()
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    shutil.copytree(tiny, broken)
    (broken / "config.json").write_text("{not json")
    cases = [
        (Path("/etc"), 403, "model roots"),
        (tmp_path / "missing", 400, "does not exist"),
        (empty, 422, "no safetensors"),
        (broken, 422, "no usable config"),
    ]
    for path, want, why in cases:
        status, out = await _start(http, f, path)
        assert status == want, (path, out)
        err = out["error"]
        assert why in err["message"] and err["message"].startswith(("w0: ", "w1: ", "w2: "))
        assert err["param"] == "model_name_or_path" and err["type"].endswith("_error"), out
        assert err["type"] != "server_error", out
    body = {"model": "tiny", "path": str(tiny), "options": {"reference": "/etc"}}
    async with http.post(f.gateway.url + "/admin/rollouts", json=body, headers=GW_ADMIN) as r:
        assert r.status == 403 and (await r.json())["error"]["param"] == "reference"
    async with http.get(f.gateway.url + "/admin/rollouts", headers=GW_ADMIN) as r:
        assert (await r.json())["data"] == []
    state = f.gateway.app[keys.BACKEND_STATE]
    assert all(
        not state.describe(b.id)["ejected"] for b in f.gateway.app[keys.REGISTRY].backends("tiny")
    )
    assert [await f.served_path(http, i) for i in range(3)] == [str(tiny)] * 3


async def test_cli_starts_a_rollout_and_follows_it(fleet: Any, tiny: Path, tmp_path: Path) -> None:
    f = await fleet()
    bad = corrupt(tiny, tmp_path / "nan")  # loads, then the gates refuse it at the first worker
    args = ["rollout", "tiny", str(bad), "--url", f.gateway.url, "--admin-key", "gw-admin"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "switchgear.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 1, (text, err.decode())
    assert "rollout " in text and "w0=refused" in text and "finite" in text, text
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "switchgear.cli",
        "rollout",
        "tiny",
        "/etc",
        "--url",
        f.gateway.url,
        "--admin-key",
        "gw-admin",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1 and "error (403)" in err.decode(), err.decode()
    assert "model roots" in err.decode(), err.decode()
