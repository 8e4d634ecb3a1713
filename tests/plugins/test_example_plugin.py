"""The external example plugin, installed with pip into this environment, runs in a gateway."""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer

from switchgear.cli import main
from switchgear.plugins.commands import install_cli, uninstall_cli
from tests.plugins import fakes
from tests.plugins.conftest import Gateway, root

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "switchgear-plugin-example"
DIST = "switchgear-plugin-example"
# setuptools is in the environment and switchgear is installed: no index, no build env.
PIP_ARGS = (
    "--no-deps",
    "--no-build-isolation",
    "--no-index",
    "--quiet",
    "--disable-pip-version-check",
)


@pytest.fixture
def installed_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    src = tmp_path / "example"
    shutil.copytree(
        EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    assert install_cli([str(src)], *PIP_ARGS) == 0
    importlib.invalidate_caches()
    monkeypatch.setenv("SWITCHGEAR_LOAD_PLUGINS", "example")
    try:
        yield
    finally:
        assert uninstall_cli([DIST], "--quiet", "--disable-pip-version-check") == 0
        sys.modules.pop("switchgear_plugin_example", None)
        importlib.invalidate_caches()


async def test_example_plugin_installed_with_pip(
    installed_example: None,
    gateway: Gateway,
    completions_server: TestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert version(DIST) == "0.1.0"
    config = {
        "auth": {"admin_key": "adm"},
        "backends": [
            {"model": "glm", "url": root(completions_server) + "/v1", "protocol": "chatglm3"}
        ],
    }
    client = await gateway(config, load_entrypoints=True)

    resp = await client.post(
        "/v1/chat/completions",
        json={"model": "glm", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert resp.status == 200, await resp.text()
    sent = completions_server.app[fakes.REQUESTS][-1]
    assert sent["metadata"] == {
        "switchgear_example": "switchgear-plugin-example"
    }  # rewrite_request ran
    resp = await client.get("/example/hello")  # register_routes ran
    assert await resp.json() == {"hello": "from switchgear-plugin-example"}

    rows: list[dict[str, Any]] = (
        await (await client.get("/admin/plugins", headers={"Authorization": "Bearer adm"})).json()
    )["data"]
    example = next(r for r in rows if r["name"] == "example")
    assert example | {"hooks": sorted(example["hooks"])} == {
        "name": "example",
        "version": "0.1.0",
        "hooks": ["register_routes", "rewrite_request"],
        "builtin": False,
        "kind": "installed",
        "enabled": True,
        "source": "entrypoint",
    }

    assert main(["plugins", "list", "--json"]) == 0
    listed = {r["name"]: r for r in orjson.loads(capsys.readouterr().out)}
    assert listed["example"]["version"] == "0.1.0"
    assert listed["switchgear.default_plugins.router"]["kind"] == "built-in"


def test_uninstalled_after_the_test() -> None:
    with pytest.raises(PackageNotFoundError):
        version(DIST)
