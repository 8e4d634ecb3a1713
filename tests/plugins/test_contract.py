"""The plugin contract, its docs and its tests cannot drift apart.

Every hook in ``switchgear/plugins/hookspecs.py`` needs a heading in ``docs/plugins.md``
equal to its signature (``## select_model(ctx, models)``) and a test function named
``test_hook_<name>`` somewhere under ``tests/``.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from switchgear.plugins import hookspecs

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "plugins.md"


def hook_signatures() -> dict[str, str]:
    out = {}
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if getattr(fn, f"{hookspecs.PROJECT}_spec", None) is not None:
            out[name] = f"{name}({', '.join(inspect.signature(fn).parameters)})"
    return out


HOOKS = hook_signatures()


def test_the_contract_has_the_documented_hooks() -> None:
    expected = {
        "startup",
        "shutdown",
        "register_routes",
        "register_discovery",
        "select_model",
        "rewrite_request",
        "rewrite_response",
        "order_backends",
        "register_adapters",
        "adapter_for_backend",
        "load_model",
        "quantize_model",
        "verify_swap",
        "register_detectors",
        "on_anomaly",
        "scale",
    }
    assert expected <= set(HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_documented_with_its_signature(name: str) -> None:
    headings = set(re.findall(r"^## (.+?)\s*$", DOCS.read_text(encoding="utf-8"), re.MULTILINE))
    assert HOOKS[name] in headings, f"docs/plugins.md has no heading '## {HOOKS[name]}'"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_has_a_test(name: str) -> None:
    pattern = re.compile(rf"^\s*(async\s+)?def test_hook_{name}\(", re.MULTILINE)
    files = [
        p for p in (ROOT / "tests").rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert files, f"no test named test_hook_{name} under tests/"


def test_every_hook_is_implementable_with_hookimpl() -> None:
    from switchgear import hookimpl

    assert hookimpl is hookspecs.hookimpl
    assert all(getattr(hookspecs, name).__doc__ for name in HOOKS)
