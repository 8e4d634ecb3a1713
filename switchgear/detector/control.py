"""The gateway control protocol: what the policy may do to the gateway.

The gateway implements this later (the proxy owns backends and fallback state); the policy
and its tests depend only on this protocol. Methods that change state are async so an
implementation may talk to other processes; ``backends`` is a cheap synchronous read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from switchgear.types import Backend, ScaleResult


@runtime_checkable
class GatewayControl(Protocol):
    def backends(self, model: str) -> Sequence[Backend]:
        """The backends of ``model`` known now, ejected ones included."""
        ...

    def has_fallback(self, model: str) -> bool:
        """Whether ``model`` has a fallback chain to send its traffic to."""
        ...

    async def eject(self, backend_id: str, reason: str) -> None:
        """Take a backend out of rotation (load balancing skips it) until readmitted."""
        ...

    async def readmit(self, backend_id: str) -> None:
        """Put an ejected backend back into rotation."""
        ...

    async def probe(self, backend_id: str) -> bool:
        """Whether the backend answers a health check now (used before readmitting)."""
        ...

    async def set_fallback(self, model: str, active: bool) -> None:
        """Route ``model``'s traffic along its fallback chain (active) or back to it."""
        ...

    async def restart(self, backend_id: str) -> bool:
        """Restart a backend; False when nothing could restart it."""
        ...

    async def scale(self, model: str, replicas: int) -> ScaleResult | None:
        """Ask the ``scale`` hook for ``replicas`` replicas of ``model``."""
        ...
