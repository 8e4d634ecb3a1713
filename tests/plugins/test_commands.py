"""``switchgear plugins list | install | uninstall`` (the pip install itself: test_example_plugin)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from switchgear.cli import main
from switchgear.plugins import commands


def test_list_shows_name_version_kind_enabled_hooks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text("plugins:\n  disabled: [canary]\n")
    assert main(["plugins", "list", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "KIND", "ENABLED", "HOOKS"]
    router = next(ln for ln in lines if ln.startswith("switchgear.default_plugins.router "))
    assert router.split()[1:] == ["0.1.0", "built-in", "yes", "select_model,", "startup"]
    canary = next(ln for ln in lines if ln.startswith("canary "))
    assert canary.split()[1:4] == ["-", "built-in", "no"]


def test_install_and_uninstall_use_pip_of_this_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def call(args: list[str], **kw: Any) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(commands.subprocess, "call", call)
    assert main(["plugins", "install", "switchgear-foo", "./local/plugin"]) == 0
    assert main(["plugins", "uninstall", "switchgear-foo"]) == 0
    assert calls == [
        [sys.executable, "-m", "pip", "install", "switchgear-foo", "./local/plugin"],
        [sys.executable, "-m", "pip", "uninstall", "-y", "switchgear-foo"],
    ]
