"""The Nomad scale plugin (needs only aiohttp; the extra ``switchgear[nomad]`` is empty).

Enable it like any third-party plugin module, in the gateway config::

    plugins:
      modules: [switchgear.default_plugins.nomad_scaler]
    scaling:
      nomad:
        address: http://nomad.service.consul:4646
        token_env: NOMAD_TOKEN
        targets: {chatglm3-6b: {job: switchgear-worker, group: chatglm3}}

``make_plugin(settings)`` builds one :class:`~switchgear.orchestrators.plugin.ScalePlugin`
per gateway app from ``scaling.nomad``; without that section it registers nothing.
"""

from __future__ import annotations

import sys
from typing import Any

from switchgear.orchestrators.plugin import ScalePlugin
from switchgear.orchestrators.policy import ScalePolicy


def make_plugin(settings: Any) -> object:
    scaling = getattr(settings, "scaling", None)
    if scaling is None or scaling.nomad is None:
        return sys.modules[__name__]
    from switchgear.orchestrators.nomad import NomadOrchestrator

    cfg = scaling.nomad
    return ScalePlugin(NomadOrchestrator(cfg), ScalePolicy(scaling), timeout_s=cfg.timeout_s * 3)
