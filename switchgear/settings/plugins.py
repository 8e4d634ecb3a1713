"""Settings of the plugin manager."""

from __future__ import annotations

from pydantic import Field

from switchgear.settings.base import Section


class PluginSettings(Section):
    modules: list[str] = Field(default_factory=list)
    directory: str | None = None
    disabled: list[str] = Field(default_factory=list)
    timeout: float = Field(5.0, gt=0)
