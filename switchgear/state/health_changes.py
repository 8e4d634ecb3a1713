"""Backend health changes as every transport of fleet health sees them: their kinds, what they
apply to, and the half of the sync that collects them as the gateway makes them.

:class:`HealthChanges` is shared by :class:`~switchgear.state.health.HealthSync` (Redis
pub/sub and hashes) and :class:`~switchgear.state.consul_health.ConsulHealth` (Consul KV
under a blocking watch); each supplies only how a batch of changes is written
(:meth:`HealthChanges._write_batch`) and how the fleet's changes come in.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from switchgear.state.metrics import StateMetrics

EJECT, READMIT, OPEN, CLOSE = "eject", "readmit", "open", "close"
FALLBACK, RESTORE = "fallback", "restore"
DIMENSION = {
    EJECT: "ejected",
    READMIT: "ejected",
    OPEN: "open",
    CLOSE: "open",
    FALLBACK: "fallback",
    RESTORE: "fallback",
}


class HealthTarget(Protocol):
    """What :class:`HealthChanges` needs of the gateway's backend state."""

    on_change: Callable[[str, str, str], None] | None

    def apply(self, backend_id: str, kind: str, reason: str, age_s: float = 0.0) -> None: ...

    def ejected_ids(self) -> dict[str, str]: ...


class ModelTarget(Protocol):
    """What :class:`HealthChanges` needs of the gateway's fallback switches (per model)."""

    on_change: Callable[[str, str, str], None] | None

    def apply(self, model: str, kind: str, reason: str, age_s: float = 0.0) -> None: ...

    def fallback_models(self) -> set[str]: ...


@dataclass(slots=True)
class Change:
    backend_id: str
    kind: str
    reason: str
    at: float


class HealthChanges(ABC):
    """The changes this gateway makes to its backend state and fallback switches, waiting to be
    written to the fleet's store.

    It hooks :meth:`changed` in as ``on_change`` of ``target`` and, when given, of ``models``.
    :meth:`changed` only notes the change (the latest per backend or model and dimension:
    ``ejected``, ``open``, ``fallback``) and wakes the writer (``_dirty``), so it never blocks
    a request. :meth:`_flush` writes what is pending in one :meth:`_write_batch` and forgets
    only the changes it wrote: one noted meanwhile waits for the next flush, and a failed
    write keeps them all. ``synced`` is set by the subclass once the first load after a
    connection is done.
    """

    def __init__(
        self, metrics: StateMetrics, target: HealthTarget, models: ModelTarget | None = None
    ) -> None:
        self.metrics, self.target, self.models = metrics, target, models
        self._pending: dict[tuple[str, str], Change] = {}
        self._dirty = asyncio.Event()
        self.synced = asyncio.Event()
        target.on_change = self.changed
        if models is not None:
            models.on_change = self.changed

    def changed(self, backend_id: str, kind: str, reason: str) -> None:
        self._pending[(backend_id, DIMENSION[kind])] = Change(backend_id, kind, reason, time.time())
        self._dirty.set()

    @abstractmethod
    async def _write_batch(self, batch: list[Change]) -> None:
        """Write these changes to the fleet's store; raises when it does not answer."""

    async def _flush(self) -> None:
        if not self._pending:
            return
        batch = dict(self._pending)
        await self._write_batch(list(batch.values()))
        for k, c in batch.items():
            if self._pending.get(k) is c:
                del self._pending[k]
        self.metrics.health_events.labels("published").inc(len(batch))
