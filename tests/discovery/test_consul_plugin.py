"""The built-in ``consul_discovery`` plugin registers ConsulDiscovery only for an enabled section."""

from __future__ import annotations

from switchgear.discovery.consul import ConsulDiscovery
from switchgear.plugins.manager import make_plugin_manager
from switchgear.settings import parse_settings

BUILTIN = "switchgear.default_plugins.consul_discovery"


def _sources(settings):  # noqa: ANN001, ANN202
    pm = make_plugin_manager(load_entrypoints=False, builtins=[BUILTIN])
    found: list[object] = []
    pm.hook.register_discovery(register=found.append, settings=settings)
    return found


def test_registers_consul_discovery_when_configured():
    (source,) = _sources(parse_settings({"consul": {"port": 8501, "service": "llm"}}))
    assert isinstance(source, ConsulDiscovery) and source.name == "consul"
    assert source.settings.port == 8501


def test_nothing_without_an_enabled_consul_section():
    assert _sources(parse_settings({})) == []
    assert _sources(parse_settings({"consul": {"enabled": False}})) == []
