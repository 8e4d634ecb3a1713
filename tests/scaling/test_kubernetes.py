"""The Kubernetes scale plugin against the API double: scale subresource reads and patches,
conflict retries, pod restarts, and every error path as a reported ScaleResult."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer

from switchgear.default_plugins import k8s_scaler
from switchgear.orchestrators.plugin import ScalePlugin
from switchgear.plugins.manager import make_plugin_manager
from switchgear.proxy.app import create_app
from switchgear.settings import parse_settings
from switchgear.types import ScaleRequest, ScaleResult
from tests.helpers import poll_until
from tests.scaling.conftest import kube_settings
from tests.scaling.k8s_double import KubeDouble


def plugin(url: str, tmp_path: Path, token: str = "k8s-token", **kw: object) -> ScalePlugin:
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    made = k8s_scaler.make_plugin(kube_settings(url, token_file, **kw))
    assert isinstance(made, ScalePlugin)
    return made


async def test_scales_deployment_and_statefulset(kube: tuple[KubeDouble, str], tmp_path: Path):
    double, url = kube
    p = plugin(url, tmp_path)
    try:
        res = await p.scale(ScaleRequest("model-a", 3, 1, "detector"))
        assert res is not None and res.error is None and res.replicas == 3
        assert double.workloads[("ml", "deployments", "worker-a")] == 3
        res = await p.scale(ScaleRequest("model-b", 1, 2, "detector"))
        assert res is not None and res.replicas == 1
        assert double.workloads[("ml", "statefulsets", "worker-b")] == 1
        assert double.patches[0]["metadata"] == {"resourceVersion": "1"}
        kinds = [a.kind for a in p.decisions.actions]
        assert kinds == ["scale_up", "scale_down"]
    finally:
        await p.orchestrator.close()


async def test_unknown_model_passes_to_other_scalers(kube: tuple[KubeDouble, str], tmp_path: Path):
    p = plugin(kube[1], tmp_path)
    assert await p.scale(ScaleRequest("elsewhere", 2, 1, "detector")) is None
    await p.orchestrator.close()


async def test_conflict_is_retried(kube: tuple[KubeDouble, str], tmp_path: Path):
    double, url = kube
    double.conflicts = 2
    p = plugin(url, tmp_path)
    res = await p.scale(ScaleRequest("model-a", 2, 1, "detector"))
    await p.orchestrator.close()
    assert res is not None and res.error is None and res.replicas == 2
    assert len(double.patches) == 3


async def test_conflicts_past_the_retries_are_reported(
    kube: tuple[KubeDouble, str], tmp_path: Path
):
    double, url = kube
    double.conflicts = 100
    token_file = tmp_path / "t"
    token_file.write_text("k8s-token")
    settings = kube_settings(url, token_file)
    settings.scaling.kubernetes.conflict_retries = 1
    p = k8s_scaler.make_plugin(settings)
    assert isinstance(p, ScalePlugin)
    res = await p.scale(ScaleRequest("model-a", 2, 1, "detector"))
    await p.orchestrator.close()
    assert res is not None and res.error is not None and res.error.startswith("conflict")
    assert res.replicas == 1 and len(double.patches) == 2


async def test_restart_deletes_the_pod(kube: tuple[KubeDouble, str], tmp_path: Path):
    double, url = kube
    p = plugin(url, tmp_path)
    res = await p.scale(ScaleRequest("model-a", 1, 1, "restart:worker-a-7d9f-x2"))
    missing = await p.scale(ScaleRequest("model-a", 1, 1, "restart:worker-a-gone"))
    await p.orchestrator.close()
    assert res is not None and res.stopped == ("worker-a-7d9f-x2",)
    assert res.started == ("deployment/worker-a",)
    assert ("ml", "worker-a-7d9f-x2") not in double.pods
    assert missing is not None and missing.error is not None and "not_found" in missing.error


@pytest.mark.parametrize(
    ("token", "kind"), [("wrong-token", "denied: Kubernetes patch"), ("k8s-readonly", "denied")]
)
async def test_denied(
    kube: tuple[KubeDouble, str], tmp_path: Path, token: str, kind: str,
    caplog: pytest.LogCaptureFixture,
):  # fmt: skip
    double, url = kube
    p = plugin(url, tmp_path, token=token)
    with caplog.at_level(logging.ERROR, "switchgear.orchestrators"):
        res = await p.scale(ScaleRequest("model-a", 2, 1, "detector"))
    await p.orchestrator.close()
    assert res is not None and res.error is not None and res.error.startswith("denied")
    assert ("401" if token == "wrong-token" else "403") in res.error
    assert double.workloads[("ml", "deployments", "worker-a")] == 1
    assert any("denied" in r.getMessage() for r in caplog.records)
    assert p.decisions.actions[-1].kind == "scale_error"


async def test_unknown_target_is_404(kube: tuple[KubeDouble, str], tmp_path: Path):
    p = plugin(kube[1], tmp_path)
    res = await p.scale(ScaleRequest("model-x", 2, 1, "detector"))
    problem = await p.check()
    await p.orchestrator.close()
    assert res is not None and res.error is not None and res.error.startswith("not_found")
    assert "no-such-worker" in res.error and "no-such-worker" in problem


async def test_api_down(tmp_path: Path, unused_port: int):
    p = plugin(f"http://127.0.0.1:{unused_port}", tmp_path)
    res = await p.scale(ScaleRequest("model-a", 2, 1, "detector"))
    await p.orchestrator.close()
    assert res is not None and res.error is not None and res.error.startswith("unreachable")
    assert res.replicas == 1


async def test_slow_api_times_out(kube: tuple[KubeDouble, str], tmp_path: Path):
    double, url = kube
    double.delay_s = 3.0
    p = plugin(url, tmp_path)
    p.orchestrator.cfg.timeout_s = 0.2  # type: ignore[attr-defined]
    res = await p.scale(ScaleRequest("model-a", 2, 1, "detector"))
    await p.orchestrator.close()
    assert res is not None and res.error is not None and res.error.startswith("timeout")


async def test_missing_credential_file(kube: tuple[KubeDouble, str], tmp_path: Path):
    settings = kube_settings(kube[1], tmp_path / "absent")
    p = k8s_scaler.make_plugin(settings)
    assert isinstance(p, ScalePlugin)
    problem = await p.check()
    assert problem.startswith("config:") and "absent" in problem
    await p.orchestrator.close()


async def test_policy_bounds_apply(kube: tuple[KubeDouble, str], tmp_path: Path):
    double, url = kube
    p = plugin(url, tmp_path, models={"model-a": {"min_replicas": 1, "max_replicas": 2}})
    res = await p.scale(ScaleRequest("model-a", 9, 1, "detector"))
    await p.orchestrator.close()
    assert res is not None and res.replicas == 2
    assert "max_replicas 2" in p.decisions.actions[-1].reason


async def test_never_below_serving_replicas(kube: tuple[KubeDouble, str], tmp_path: Path):
    double, url = kube
    p = plugin(url, tmp_path)
    p.serving = lambda model: 2
    res = await p.scale(ScaleRequest("model-b", 0, 2, "detector"))
    await p.orchestrator.close()
    assert res is not None and res.replicas == 2
    assert double.workloads[("ml", "statefulsets", "worker-b")] == 2
    assert "2 replicas serve traffic" in p.decisions.actions[-1].reason


async def test_enabled_through_plugins_modules(kube: tuple[KubeDouble, str], tmp_path: Path):
    """As a user enables it: ``plugins.modules``; the hook call goes through the manager."""
    from switchgear.plugins.manager import first_result

    double, url = kube
    (tmp_path / "t").write_text("k8s-token")
    settings = kube_settings(url, tmp_path / "t")
    settings.plugins.modules = ["switchgear.default_plugins.k8s_scaler"]
    pm = make_plugin_manager(settings=settings, load_entrypoints=False)
    assert pm.sources["switchgear.default_plugins.k8s_scaler"] == "module"
    res = await first_result(pm, "scale", request=ScaleRequest("model-a", 2, 1, "detector"))
    await pm.get_plugin("switchgear.default_plugins.k8s_scaler").orchestrator.close()
    assert isinstance(res, ScaleResult) and res.replicas == 2
    assert double.workloads[("ml", "deployments", "worker-a")] == 2


async def test_cold_start_scales_the_deployment_from_zero(
    kube: tuple[KubeDouble, str], tmp_path: Path, http: aiohttp.ClientSession
):
    """A request for a model at zero replicas patches the Deployment to one; with no replica
    ready within the wait the client gets the 503 with Retry-After, and the decision is listed."""
    double, url = kube
    double.add("ml", "deployments", "worker-z", 0)
    (tmp_path / "t").write_text("k8s-token")
    settings = parse_settings({
        "auth": {"admin_key": "adm"},
        "models": {"model-z": {}},
        "plugins": {"modules": ["switchgear.default_plugins.k8s_scaler"]},
        "scaling": {"kubernetes": {"auth": "token", "host": url, "namespace": "ml",
                                   "token_file": str(tmp_path / "t"),
                                   "targets": {"model-z": {"name": "worker-z"}}},
                    "cold_start_wait_s": 0.5, "cooldown_s": 0},
    })  # fmt: skip
    pm = make_plugin_manager(settings=settings, load_entrypoints=False)
    server = TestServer(create_app(settings, plugin_manager=pm), host="127.0.0.1")
    await server.start_server()
    try:
        body = {"model": "model-z", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(server.make_url("/v1/chat/completions"), json=body) as resp:
            assert resp.status == 503 and "Retry-After" in resp.headers
        await poll_until(
            lambda: double.workloads[("ml", "deployments", "worker-z")] == 1,
            within=5, what="worker-z patched to 1",
        )  # fmt: skip
        hdr = {"Authorization": "Bearer adm"}
        async with http.get(server.make_url("/admin/actions"), headers=hdr) as resp:
            actions = (await resp.json())["actions"]
        assert actions[0]["kind"] == "scale_up" and actions[0]["reason"].startswith("cold start")
    finally:
        await server.close()


async def test_kubeconfig_auth(kube: tuple[KubeDouble, str], tmp_path: Path):
    double, url = kube
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "other",
        "clusters": [{"name": "double", "cluster": {"server": url}}],
        "users": [{"name": "gateway", "user": {"token": "k8s-token"}}],
        "contexts": [{"name": "double", "context": {"cluster": "double", "user": "gateway"}},
                     {"name": "other", "context": {"cluster": "double", "user": "nobody"}}],
    }))  # fmt: skip
    settings = parse_settings({"scaling": {"cooldown_s": 0, "kubernetes": {
        "auth": "kubeconfig", "kubeconfig": str(kubeconfig), "context": "double",
        "namespace": "ml", "targets": {"model-a": {"name": "worker-a"}},
    }}})  # fmt: skip
    p = k8s_scaler.make_plugin(settings)
    assert isinstance(p, ScalePlugin)
    res = await p.scale(ScaleRequest("model-a", 3, 1, "detector"))
    await p.orchestrator.close()
    assert res is not None and res.error is None and res.replicas == 3
    assert double.workloads[("ml", "deployments", "worker-a")] == 3
