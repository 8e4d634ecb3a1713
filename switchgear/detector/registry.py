"""Detector factories by name, collected through the ``register_detectors`` hook."""

from __future__ import annotations

from typing import Any

import pluggy

from switchgear.detector.base import Detector, DetectorFactory
from switchgear.errors import ConfigError

BUILTIN_MODULE = "switchgear.default_plugins.detectors"


def detector_factories(pm: pluggy.PluginManager | None = None) -> dict[str, DetectorFactory]:
    """Every registered factory; a later registration of a name replaces an earlier one.

    Built-ins are ``trylast``, so pluggy calls them last and a third-party plugin's detector
    of the same name is registered first; the first registration of a name therefore wins.
    """
    from switchgear.plugins.manager import call_hook_sync, make_plugin_manager

    if pm is None:
        pm = make_plugin_manager(load_entrypoints=True, builtins=(BUILTIN_MODULE,))
    found: dict[str, DetectorFactory] = {}

    def register(name: str, factory: DetectorFactory) -> None:
        found.setdefault(name, factory)

    call_hook_sync(pm, "register_detectors", register=register)
    return found


def make_detector(
    name: str, factories: dict[str, DetectorFactory] | None = None, **params: Any
) -> Detector:
    factories = detector_factories() if factories is None else factories
    if name not in factories:
        raise ConfigError(
            "detector", f"unknown detector {name!r}; known: {', '.join(sorted(factories))}"
        )
    return factories[name](**params)
