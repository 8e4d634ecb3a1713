"""Built-in plugin: Consul discovery when the config has an enabled ``consul:`` section."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from switchgear.plugins.hookspecs import hookimpl


@hookimpl(trylast=True)
def register_discovery(register: Callable[[Any], None], settings: Any) -> None:
    consul_settings = getattr(settings, "consul", None)
    if consul_settings is None or not consul_settings.enabled:
        return
    from switchgear.discovery.consul import ConsulDiscovery

    register(ConsulDiscovery(consul_settings))
