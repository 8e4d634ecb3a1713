"""Built-in plugin: the static backend list from the config file as a discovery source."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from switchgear.discovery.static import StaticSource, backends_from_settings
from switchgear.plugins.hookspecs import hookimpl


@hookimpl(trylast=True)
def register_discovery(register: Callable[[Any], None], settings: Any) -> None:
    entries = getattr(settings, "backends", None) or []
    if entries:
        register(StaticSource(backends_from_settings(entries)))
