"""Binding a scale plugin to its gateway app at ``startup``: it counts replicas serving
traffic from the registry, and its decision log joins ``/admin/actions`` and ``/metrics``."""

from __future__ import annotations

from typing import Any


def bind(app: Any, plugin: Any) -> None:
    from switchgear.proxy import keys

    registry, state = app[keys.REGISTRY], app[keys.BACKEND_STATE]

    def serving(model: str) -> int:
        return sum(1 for b in registry.backends(model) if state.healthy(b.id))

    plugin.serving = serving
    logs = app.get(keys.SCALE_DECISIONS)
    if logs is not None:
        logs.append(plugin.decisions)
