"""The static discovery source: backends listed under ``backends:`` in the config file.

It publishes its list once and then waits until cancelled; the list never changes while
the gateway runs. ``Backend.id`` defaults to the backend's URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from switchgear.discovery.base import Registry
from switchgear.types import Backend


def backends_from_settings(entries: Iterable[Any]) -> list[Backend]:
    """Backends from ``settings.backends`` entries (StaticBackend models or equivalent)."""
    return [
        Backend(
            id=e.id or e.url,
            model=e.model,
            url=e.url,
            datacenter=e.datacenter,
            weight=e.weight,
            api_key=e.api_key,
            protocol=e.protocol,
            source="static",
            meta=dict(getattr(e, "meta", None) or {}),
        )
        for e in entries
    ]


class StaticSource:
    name = "static"

    def __init__(self, backends: Iterable[Backend]) -> None:
        self.backends = tuple(backends)

    async def run(self, registry: Registry) -> None:
        registry.replace(self.name, self.backends)
        await asyncio.Event().wait()
