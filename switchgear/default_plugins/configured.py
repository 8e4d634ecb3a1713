"""Built-in plugins that read configuration get it from their plugin manager, or at startup.

:func:`~switchgear.plugins.manager.make_plugin_manager` called with ``settings`` builds them
configured. A manager built without settings (``make_plugin_manager()`` alone) still works:
their ``startup`` hook reads the program's settings from the ``host`` argument
(:class:`~switchgear.plugins.host.Host`) before the first request arrives.
"""

from __future__ import annotations

from typing import Any

from switchgear import hookimpl
from switchgear.plugins.host import Host


class Configured:
    """Mixin: ``configure(settings)`` now, or at ``startup`` when built without settings."""

    configured: bool = False

    def configure(self, settings: Any) -> None:
        raise NotImplementedError

    def bind(self, settings: Any) -> None:
        self.configure(settings)
        self.configured = settings is not None

    @hookimpl
    def startup(self, host: Host) -> None:
        if not self.configured and host.settings is not None:
            self.bind(host.settings)
