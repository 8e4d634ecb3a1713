"""One YAML schema for both programs (gateway and worker), validated at start.

:func:`load_settings` is the only entry point; it raises :class:`~switchgear.errors.ConfigError`
naming the key path and the reason, never a traceback.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, ValidationError, model_validator

from switchgear.errors import ConfigError
from switchgear.settings.base import format_validation_error, read_yaml, substitute_env
from switchgear.settings.consul import ConsulSettings
from switchgear.settings.detector import DetectorSettings
from switchgear.settings.gateway import GatewaySection
from switchgear.settings.plugins import PluginSettings
from switchgear.settings.router import RouterSettings
from switchgear.settings.scaling import ScalingSection
from switchgear.settings.worker import WorkerSection

__all__ = ["Settings", "load_settings", "parse_settings", "ConfigError"]


class Settings(GatewaySection):
    """The whole file. Sections a program does not use are ignored by it."""

    plugins: PluginSettings = Field(default_factory=PluginSettings)
    consul: ConsulSettings | None = None
    router: RouterSettings = Field(default_factory=RouterSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    worker: WorkerSection | None = None
    scaling: ScalingSection = Field(default_factory=ScalingSection)

    @model_validator(mode="after")
    def _state_on_consul(self) -> Settings:
        if self.state.consul and (self.consul is None or not self.consul.enabled):
            raise ValueError("state.consul needs an enabled consul section (the agent to use)")
        return self


def parse_settings(data: dict[str, Any]) -> Settings:
    """Validate an already-parsed mapping (``${ENV}`` substituted first)."""
    data = substitute_env(data)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc) from None


def load_settings(path: str | os.PathLike[str] | None, **overrides: Any) -> Settings:
    """Read, substitute and validate a YAML file; ``overrides`` are dotted keys (``listen.port``)."""
    data: dict[str, Any] = read_yaml(path) if path is not None else {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(dotted, "cannot override inside a non-mapping")
        node[leaf] = value
    return parse_settings(data)
