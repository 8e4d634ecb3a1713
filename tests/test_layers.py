"""Imports inside ``switchgear/`` flow one way, checked over the AST of every module.

Layers, lowest first; a module may import its own layer and the ones below it:

0. core: ``types``, ``errors``, ``settings``, ``bodies``
1. the plugin machinery: ``plugins`` (hookspecs, manager, calls, adapter_map, host,
   commands) and the package ``switchgear`` itself, which re-exports ``hookimpl``
2. ``discovery``, ``detector``
3. ``worker``, ``proxy`` — peers: neither imports the other
4. ``default_plugins`` (the built-in plugins)
5. ``cli`` (and ``cli_commands``), ``launcher``
6. the compat aliases ``switchgear.plugins.adapters`` and ``switchgear.plugins.builtin``,
   which re-export built-ins under their old names (nothing in switchgear imports them)

Every import counts, also one inside a function: a lazy import still ties the layers
together. Imports under ``if TYPE_CHECKING:`` are allowed in any direction: they exist only
for the type checker (e.g. the hookspecs name the worker's ``ModelBundle``) and are never
executed. Loading a plugin by its module name (``DEFAULT_PLUGINS``) is not an import here:
that is what the machinery is for. A module in no layer fails the test, so a new part must
be placed on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import switchgear

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "switchgear"

LAYERS: dict[str, int] = {
    "switchgear.types": 0,
    "switchgear.errors": 0,
    "switchgear.settings": 0,
    "switchgear.bodies": 0,
    "switchgear.auth": 0,
    "switchgear.urls": 0,
    "switchgear": 1,
    "switchgear.plugins": 1,
    "switchgear.discovery": 2,
    "switchgear.detector": 2,
    "switchgear.state": 2,
    # OpenTelemetry tracing: settings and core types only; the proxy calls into it.
    "switchgear.telemetry": 2,
    # Scale-decision records: core types only, read by the proxy and the orchestrator plugins.
    "switchgear.orchestrators.policy": 2,
    "switchgear.worker": 3,
    "switchgear.proxy": 3,
    "switchgear.default_plugins": 4,
    "switchgear.orchestrators": 4,
    "switchgear.cli": 5,
    "switchgear.cli_commands": 5,
    "switchgear.launcher": 5,
    # `config check` and `serve`: they check settings against every plugin, so sit on top.
    "switchgear.settings.check": 5,
    "switchgear.plugins.adapters": 6,
    "switchgear.plugins.builtin": 6,
}
PEERS = {frozenset({"switchgear.worker", "switchgear.proxy"})}


def part(module: str) -> str | None:
    """The longest entry of :data:`LAYERS` that ``module`` is or lies inside.

    ``switchgear`` itself is only the package's ``__init__`` (and names it re-exports).
    """
    if module.removeprefix("switchgear.") in switchgear.__all__:
        return "switchgear"
    best = None
    for name in LAYERS:
        inside = module.startswith(name + ".") and name != "switchgear"
        if (module == name or inside) and (best is None or len(name) > len(best)):
            best = name
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every import outside ``if TYPE_CHECKING:`` blocks."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            found.append((node.lineno, target))
            # ``from switchgear import cli`` imports the module switchgear.cli
            found.extend((node.lineno, f"{target}.{a.name}") for a in node.names if a.name != "*")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    me = part(module)
    if me is None:
        return [f"{module} is in no layer: add it to LAYERS in tests/test_layers.py"]
    out = []
    for line, target in imports(source, module, is_package):
        there = part(target)
        if there is None or there == me:
            continue
        if LAYERS[there] > LAYERS[me] or frozenset({me, there}) in PEERS:
            out.append(f"{module}:{line} imports {target} ({there} is above or beside {me})")
    return out


def all_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_imports_flow_one_way() -> None:
    found = []
    for path in all_modules():
        src = path.read_text(encoding="utf-8")
        found += violations(module_name(path), src, path.name == "__init__.py")
    assert not found, "imports against the layers:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("module", "source", "bad"),
    [
        ("switchgear.plugins.manager", "from switchgear.proxy import keys\n", True),
        ("switchgear.plugins.manager", "def f():\n    import switchgear.worker.app\n", True),
        ("switchgear.types", "from switchgear import hookimpl\n", True),
        ("switchgear.proxy.app", "from switchgear.worker.keys import SLOT\n", True),
        ("switchgear.worker.app", "from ..proxy import keys\n", True),
        ("switchgear.default_plugins.scaler", "from switchgear.proxy import keys\n", False),
        (
            "switchgear.plugins.hookspecs",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from switchgear.worker.loading import ModelBundle\n",
            False,
        ),
        ("switchgear.cli", "from switchgear import cli, proxy\n", False),
        ("switchgear.detector.service", "from switchgear import default_plugins\n", True),
    ],
)
def test_the_check_itself(module: str, source: str, bad: bool) -> None:
    assert bool(violations(module, source)) is bad


def test_a_module_in_no_layer_fails() -> None:
    assert violations("switchgear.newpart", "") != []
