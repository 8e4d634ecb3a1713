"""Bad scaling input at ``config check`` and at start: an unknown scale target, a missing
credential and an unreachable API give clear errors naming the key; the gateway serves."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer

from switchgear.plugins.manager import make_plugin_manager
from switchgear.proxy.app import create_app
from switchgear.settings import parse_settings
from switchgear.settings.check import check_file
from switchgear.types import ScaleRequest
from tests.helpers import poll_until
from tests.scaling.k8s_double import KubeDouble
from tests.scaling.nomad_double import NomadDouble

K8S = "switchgear.default_plugins.k8s_scaler"
NOMAD = "switchgear.default_plugins.nomad_scaler"


def write(tmp_path: Path, scaling: dict[str, object], modules: list[str]) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"plugins": {"modules": modules}, "scaling": scaling}))
    return str(path)


def k8s(url: str, token_file: Path, name: str = "worker-a") -> dict[str, object]:
    return {"kubernetes": {"auth": "token", "host": url, "token_file": str(token_file),
                           "namespace": "ml", "timeout_s": 2,
                           "targets": {"model-a": {"name": name}}}}  # fmt: skip


async def test_config_check_good(kube: tuple[KubeDouble, str], tmp_path: Path, capsys):
    (tmp_path / "t").write_text("k8s-token")
    path = write(tmp_path, k8s(kube[1], tmp_path / "t"), [K8S])
    assert await _check(path) == 0
    assert "error" not in capsys.readouterr().out


async def _check(path: str) -> int:
    import asyncio

    # check_file runs its own event loop, so it goes to a thread, as the CLI runs it
    return await asyncio.to_thread(check_file, path)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "unknown-target",
            "scaling.kubernetes: not_found: Kubernetes read Deployment ml/nope scale: 404",
        ),
        ("missing-credential", "scaling.kubernetes: token_file"),
        ("unreachable", "scaling.kubernetes: unreachable: Kubernetes API at http://127.0.0.1:"),
        ("not-enabled", f"scaling.kubernetes: set, but plugins.modules does not enable {K8S}"),
    ],
)
async def test_config_check_bad(
    kube: tuple[KubeDouble, str], tmp_path: Path, capsys, unused_port: int, case: str,
    expected: str,
):  # fmt: skip
    token = tmp_path / "t"
    token.write_text("k8s-token")
    url, modules, name = kube[1], [K8S], "worker-a"
    if case == "unknown-target":
        name = "nope"
    elif case == "missing-credential":
        token = tmp_path / "absent"
    elif case == "unreachable":
        url = f"http://127.0.0.1:{unused_port}"
    else:
        modules = []
    assert await _check(write(tmp_path, k8s(url, token, name), modules)) == 1
    out = capsys.readouterr().out
    assert f"  error: {expected}" in out, out


async def test_config_check_nomad_missing_token(
    nomad: tuple[NomadDouble, str], tmp_path: Path, capsys, monkeypatch
):
    monkeypatch.delenv("NOMAD_TOKEN", raising=False)
    cfg = {"nomad": {"address": nomad[1], "acl": True,
                     "targets": {"model-a": {"job": "switchgear-worker", "group": "model-a"}}}}  # fmt: skip
    assert await _check(write(tmp_path, cfg, [NOMAD])) == 1
    assert (
        "scaling.nomad: config: Nomad ACL token missing: set $NOMAD_TOKEN"
        in capsys.readouterr().out
    )


async def test_gateway_starts_and_serves_with_a_broken_scaler(
    tmp_path: Path, unused_port: int, http: aiohttp.ClientSession, caplog
):
    (tmp_path / "t").write_text("k8s-token")
    settings = parse_settings({
        "plugins": {"modules": [K8S]},
        "scaling": k8s(f"http://127.0.0.1:{unused_port}", tmp_path / "t"),
    })  # fmt: skip
    pm = make_plugin_manager(settings=settings, load_entrypoints=False)
    caplog.set_level(logging.ERROR, "switchgear.orchestrators")
    server = TestServer(create_app(settings, plugin_manager=pm), host="127.0.0.1")
    await server.start_server()
    try:
        async with http.get(server.make_url("/healthz")) as resp:
            assert resp.status == 200
        plugin = pm.get_plugin(K8S)
        await poll_until(lambda: plugin.healthy is not None, within=10, what="start-up check")
        assert plugin.healthy.startswith("unreachable")
        assert any("kubernetes scaler: unreachable" in r.getMessage() for r in caplog.records)
        res = await plugin.scale(ScaleRequest("model-a", 2, 1, "detector"))
        assert res.error is not None and res.replicas == 1
    finally:
        await server.close()


def test_settings_name_the_key():
    from switchgear.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_settings({"scaling": {"kubernetes": {"auth": "token"}}})
    assert "scaling.kubernetes" in str(err.value) and "token_file" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_settings({"scaling": {"models": {"m": {"min_replicas": 3, "max_replicas": 2}}}})
    assert "scaling.models.m" in str(err.value)
