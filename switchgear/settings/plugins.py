"""Settings of the plugin manager.

``modules`` are importable module names registered as plugins; ``directory`` holds ``*.py``
plugin files; ``disabled`` blocks plugins by name (a built-in's short name such as
``router`` or its module path, an entry-point name, a module name or a file stem);
``timeout`` bounds each async hook implementation, in seconds.
"""

from __future__ import annotations

from pydantic import Field

from switchgear.settings.base import Section


class PluginSettings(Section):
    modules: list[str] = Field(default_factory=list)
    directory: str | None = None
    disabled: list[str] = Field(default_factory=list)
    timeout: float = Field(5.0, gt=0)
