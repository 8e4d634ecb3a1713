"""What a running program hands its plugins at ``startup``, instead of them reading app keys.

A built-in plugin must not import the gateway or the worker to find their state (that would
tie it to one program, and hide the dependency from the import graph). The gateway and the
worker each build a :class:`Host` and pass it as the ``host`` argument of ``startup``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from switchgear.types import Backend

if TYPE_CHECKING:
    from switchgear.settings import Settings


class BackendRegistry(Protocol):
    """The part of the gateway's :class:`~switchgear.discovery.base.Registry` a plugin may use."""

    def replace(self, source: str, backends: Iterable[Backend]) -> None: ...

    def backends(self, model: str) -> Sequence[Backend]: ...


@dataclass(frozen=True, slots=True)
class Host:
    """The program running the plugins: ``"gateway"`` or ``"worker"``.

    ``settings`` are the program's validated settings; ``registry`` is the gateway's backend
    registry (None in a worker), for plugins that publish backends (e.g. the local scaler).
    """

    program: Literal["gateway", "worker"]
    settings: Settings | None = None
    registry: BackendRegistry | None = None
