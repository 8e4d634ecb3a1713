"""The registry of backends the gateway routes to, fed by discovery sources.

A source (static list, Consul, a third-party plugin) owns a slice of the registry and
replaces it wholesale with :meth:`Registry.replace` whenever it learns something new, so
the registry never holds half an update. The gateway reads it on every request; reads are
plain dict lookups on immutable tuples, safe without locks on one event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from switchgear.types import Backend


@dataclass(slots=True)
class SourceState:
    backends: tuple[Backend, ...] = ()
    healthy: bool = True
    detail: str = ""
    updated_at: float = field(default_factory=time.time)


class Registry:
    """model → backends, merged over sources, with the datacenter preference order.

    ``local_datacenter`` and ``datacenter_order`` (nearest first) decide which backends a
    request tries first: the gateway's own datacenter, then the others in that order.
    """

    def __init__(self, local_datacenter: str = "local") -> None:
        self.local_datacenter = local_datacenter
        self.datacenter_order: tuple[str, ...] = (local_datacenter,)
        self._sources: dict[str, SourceState] = {}
        self._by_model: dict[str, tuple[Backend, ...]] = {}
        self._changed = asyncio.Event() if _has_loop() else None
        self.version = 0

    # --- writes (by sources) ---------------------------------------------------------

    def replace(
        self, source: str, backends: Iterable[Backend], *, healthy: bool = True, detail: str = ""
    ) -> None:
        """Replace everything ``source`` contributed; mark it healthy (or not)."""
        self._sources[source] = SourceState(tuple(backends), healthy, detail)
        self._rebuild()

    def mark(self, source: str, *, healthy: bool, detail: str = "") -> None:
        """Change a source's health without touching its backends (keep serving the last known)."""
        state = self._sources.setdefault(source, SourceState())
        state.healthy, state.detail, state.updated_at = healthy, detail, time.time()

    def set_datacenters(self, order: Iterable[str], local: str | None = None) -> None:
        if local is not None:
            self.local_datacenter = local
        dcs = [self.local_datacenter] + [d for d in order if d != self.local_datacenter]
        self.datacenter_order = tuple(dcs)
        self._rebuild()

    def _rebuild(self) -> None:
        merged: dict[str, list[Backend]] = {}
        seen: set[str] = set()
        for state in self._sources.values():
            for b in state.backends:
                if b.id in seen:
                    continue
                seen.add(b.id)
                merged.setdefault(b.model, []).append(b)
        rank = {dc: i for i, dc in enumerate(self.datacenter_order)}
        far = len(rank)
        self._by_model = {
            m: tuple(sorted(bs, key=lambda b: rank.get(b.datacenter, far)))
            for m, bs in merged.items()
        }
        self.version += 1
        if self._changed is None and _has_loop():
            self._changed = asyncio.Event()
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    # --- reads (by the gateway) --------------------------------------------------------

    def backends(self, model: str) -> tuple[Backend, ...]:
        """All backends of ``model``, nearest datacenter first."""
        return self._by_model.get(model, ())

    def by_datacenter(self, model: str) -> list[tuple[str, tuple[Backend, ...]]]:
        """Backends of ``model`` grouped by datacenter, in preference order."""
        groups: dict[str, list[Backend]] = {}
        for b in self.backends(model):
            groups.setdefault(b.datacenter, []).append(b)
        return [(dc, tuple(bs)) for dc, bs in groups.items()]

    def models(self) -> list[str]:
        return sorted(self._by_model)

    def all_backends(self) -> list[Backend]:
        return [b for bs in self._by_model.values() for b in bs]

    def sources(self) -> dict[str, SourceState]:
        return dict(self._sources)

    @property
    def degraded(self) -> bool:
        return any(not s.healthy for s in self._sources.values())

    async def wait_changed(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - a deadline for callers, not for the event
        """Wait until the registry changes; False on timeout."""
        if self._changed is None:
            self._changed = asyncio.Event()
        ev = self._changed
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except TimeoutError:
            return False
        return True


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
