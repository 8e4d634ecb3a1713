"""The Nomad scale plugin against the API double: job read, task-group scale, allocation
restart, ACL token, and every error path as a reported ScaleResult."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchgear.default_plugins import nomad_scaler
from switchgear.orchestrators.plugin import ScalePlugin
from switchgear.types import ScaleRequest
from tests.scaling.conftest import nomad_settings
from tests.scaling.nomad_double import NomadDouble

ALLOC = "5d2c1a4e-0000-4000-8000-000000000001"


def plugin(url: str, **kw: object) -> ScalePlugin:
    made = nomad_scaler.make_plugin(nomad_settings(url, **kw))
    assert isinstance(made, ScalePlugin)
    return made


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_NOMAD_TOKEN", "nomad-secret")


async def test_scales_task_group_with_token(nomad: tuple[NomadDouble, str]):
    double, url = nomad
    p = plugin(url)
    res = await p.scale(ScaleRequest("model-a", 3, 1, "detector"))
    await p.orchestrator.close()
    assert res is not None and res.error is None and res.replicas == 3
    assert double.jobs[("default", "switchgear-worker")]["model-a"] == 3
    body = double.scales[-1]
    assert body["Count"] == 3 and body["Target"] == {"Group": "model-a"}
    assert p.decisions.actions[-1].kind == "scale_up"


async def test_token_from_file(nomad: tuple[NomadDouble, str], tmp_path: Path, monkeypatch):
    monkeypatch.delenv("TEST_NOMAD_TOKEN")
    (tmp_path / "tok").write_text("nomad-secret\n")
    p = plugin(nomad[1], token_file=str(tmp_path / "tok"))
    res = await p.scale(ScaleRequest("model-a", 2, 1, "detector"))
    await p.orchestrator.close()
    assert res is not None and res.error is None and res.replicas == 2


async def test_wrong_token_is_denied(nomad: tuple[NomadDouble, str], monkeypatch):
    monkeypatch.setenv("TEST_NOMAD_TOKEN", "stolen")
    double, url = nomad
    p = plugin(url)
    res = await p.scale(ScaleRequest("model-a", 2, 1, "detector"))
    await p.orchestrator.close()
    assert res is not None and res.error is not None and res.error.startswith("denied")
    assert "403" in res.error and not double.scales


async def test_unknown_job_and_group(nomad: tuple[NomadDouble, str]):
    double, url = nomad
    p = plugin(url)
    job = await p.scale(ScaleRequest("model-j", 2, 1, "detector"))
    group = await p.scale(ScaleRequest("model-z", 2, 1, "detector"))
    problem = await p.check()
    await p.orchestrator.close()
    assert job is not None and job.error is not None and job.error.startswith("not_found")
    assert group is not None and group.error is not None and "model-z" in group.error
    assert problem.startswith("not_found") and not double.scales


async def test_restart_allocation(nomad: tuple[NomadDouble, str]):
    double, url = nomad
    p = plugin(url)
    res = await p.scale(ScaleRequest("model-a", 1, 1, f"restart:{ALLOC}"))
    gone = await p.scale(ScaleRequest("model-a", 1, 1, "restart:not-an-alloc"))
    await p.orchestrator.close()
    assert res is not None and res.error is None and res.stopped == (ALLOC,)
    assert double.restarts == [ALLOC]
    assert gone is not None and gone.error is not None and "404" in gone.error


async def test_api_down(unused_port: int):
    p = plugin(f"http://127.0.0.1:{unused_port}")
    res = await p.scale(ScaleRequest("model-a", 2, 1, "detector"))
    await p.orchestrator.close()
    assert res is not None and res.error is not None and res.error.startswith("unreachable")


async def test_slow_api(nomad: tuple[NomadDouble, str]):
    double, url = nomad
    double.delay_s = 3.0
    p = plugin(url, timeout_s=0.2)
    res = await p.scale(ScaleRequest("model-a", 2, 1, "detector"))
    await p.orchestrator.close()
    assert res is not None and res.error is not None and res.error.startswith("timeout")


async def test_cooldown_holds_a_second_change(nomad: tuple[NomadDouble, str]):
    double, url = nomad
    p = plugin(url)
    p.policy.s.cooldown_s = 60
    first = await p.scale(ScaleRequest("model-a", 2, 1, "detector"))
    second = await p.scale(ScaleRequest("model-a", 4, 2, "detector"))
    await p.orchestrator.close()
    assert first is not None and first.replicas == 2
    assert second is not None and second.replicas == 2
    assert "cooldown" in p.decisions.actions[-1].reason
    assert p.decisions.actions[-1].kind == "scale_hold"


async def test_namespace_is_a_query_parameter(nomad: tuple[NomadDouble, str]):
    double, url = nomad
    double.jobs[("ml", "switchgear-worker")] = {"model-a": 5}
    p = plugin(url, namespace="ml")
    res = await p.scale(ScaleRequest("model-a", 6, 5, "detector"))
    await p.orchestrator.close()
    assert res is not None and res.error is None and res.replicas == 6
    assert double.jobs[("ml", "switchgear-worker")]["model-a"] == 6
    assert double.jobs[("default", "switchgear-worker")]["model-a"] == 1
