"""Settings of the anomaly detector and the action policy (owned by the detector part)."""

from __future__ import annotations

from pydantic import Field

from switchgear.settings.base import Section


class DetectorSettings(Section):
    enabled: bool = False
    resolution_s: float = Field(1.0, gt=0)
