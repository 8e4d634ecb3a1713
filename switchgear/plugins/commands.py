"""``switchgear plugins list | install | uninstall`` (called by :mod:`switchgear.cli`).

``install`` and ``uninstall`` run pip of the interpreter switchgear runs in, like
``llm install``, so a plugin lands where the gateway will find its entry point.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from switchgear.plugins.manager import describe_plugins, make_plugin_manager


def list_cli(config: str | None = None, as_json: bool = False) -> int:
    settings = None
    if config is not None:
        from switchgear.settings import load_settings

        settings = load_settings(config)
    rows = describe_plugins(make_plugin_manager(settings=settings))
    if as_json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(format_table(rows))
    return 0


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ("NAME", "VERSION", "KIND", "ENABLED", "HOOKS")
    lines = [header] + [
        (
            r["name"],
            r["version"] or "-",
            r["kind"],
            "yes" if r["enabled"] else "no",
            ", ".join(r["hooks"]) or "-",
        )
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in lines) for i in range(4)]
    return "\n".join(
        "  ".join(str(v).ljust(w) for v, w in zip(line[:4], widths, strict=True)) + "  " + line[4]
        for line in lines
    )


def pip_command(action: str, names: Sequence[str], *extra: str) -> list[str]:
    args = [sys.executable, "-m", "pip", action]
    if action == "uninstall":
        args.append("-y")
    return [*args, *extra, *names]


def install_cli(names: Sequence[str], *extra: str) -> int:
    """``pip install NAME|PATH ...``; the exit status is pip's."""
    return subprocess.call(pip_command("install", names, *extra))


def uninstall_cli(names: Sequence[str], *extra: str) -> int:
    return subprocess.call(pip_command("uninstall", names, *extra))
