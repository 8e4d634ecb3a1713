"""Settings of the built-in prompt router and canary/shadow plugin (owned by the plugins part)."""

from __future__ import annotations

from pydantic import Field

from switchgear.settings.base import Section


class RouterSettings(Section):
    aliases: list[str] = Field(default_factory=lambda: ["auto"])
