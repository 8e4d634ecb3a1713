"""``switchgear register`` / ``switchgear deregister``: external backends in Consul."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping

from switchgear.discovery.consul_client import ConsulError, make_client
from switchgear.discovery.registration import deregister_backend, register_external
from switchgear.errors import ConfigError
from switchgear.settings import load_settings
from switchgear.settings.consul import ConsulSettings


def _settings(config: str | None) -> ConsulSettings:
    settings = load_settings(config)
    return settings.consul or ConsulSettings()


async def _local_datacenter(settings: ConsulSettings) -> str | None:
    client = make_client(settings)
    try:
        order = await client.catalog.datacenters()
        return order[0] if order else None
    finally:
        await client.close()


async def _register(
    settings: ConsulSettings,
    url: str,
    model: str,
    dc: str | None,
    service_id: str | None,
    protocol: str,
    meta: Mapping[str, str],
) -> str:
    if dc is not None:
        local = await _local_datacenter(settings)
        if local is not None and dc != local:
            # Agent endpoints act only on the agent's own DC (contract §12).
            raise ConfigError(
                "consul.host",
                f"the agent at {settings.host}:{settings.port} is in {local!r}, not "
                f"{dc!r}; point consul.host at an agent in {dc!r}",
            )
    return await register_external(
        settings, url, model, service_id=service_id, protocol=protocol, meta=meta
    )


def register_cli(
    url: str,
    model: str,
    dc: str | None = None,
    service_id: str | None = None,
    protocol: str = "openai",
    meta: Mapping[str, str] | None = None,
    config: str | None = None,
) -> int:
    try:
        settings = _settings(config)
        sid = asyncio.run(
            _register(settings, url, model, dc, service_id, protocol, dict(meta or {}))
        )
    except (ConsulError, ConfigError, ValueError, OSError) as exc:
        print(f"switchgear register: {exc}", file=sys.stderr)
        return 1
    print(f"registered {sid} ({model} at {url}); Consul routes to it once its health check passes")
    return 0


def deregister_cli(service_id: str, config: str | None = None) -> int:
    try:
        settings = _settings(config)
        found = asyncio.run(deregister_backend(settings, service_id))
    except (ConsulError, ConfigError, OSError) as exc:
        print(f"switchgear deregister: {exc}", file=sys.stderr)
        return 1
    if not found:
        print(
            f"switchgear deregister: the local Consul agent does not know {service_id!r}",
            file=sys.stderr,
        )
        return 1
    print(f"deregistered {service_id}")
    return 0
