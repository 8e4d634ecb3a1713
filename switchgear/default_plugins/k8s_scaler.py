"""The Kubernetes scale plugin (optional extra ``switchgear[kubernetes]``).

Enable it like any third-party plugin module, in the gateway config::

    plugins:
      modules: [switchgear.default_plugins.k8s_scaler]
    scaling:
      kubernetes:
        auth: in-cluster
        targets: {chatglm3-6b: {kind: Deployment, name: worker-chatglm3}}

``make_plugin(settings)`` builds one :class:`~switchgear.orchestrators.plugin.ScalePlugin`
per gateway app from ``scaling.kubernetes``; without that section it registers nothing.
"""

from __future__ import annotations

import sys
from typing import Any

from switchgear.orchestrators.plugin import ScalePlugin
from switchgear.orchestrators.policy import ScalePolicy


def make_plugin(settings: Any) -> object:
    scaling = getattr(settings, "scaling", None)
    if scaling is None or scaling.kubernetes is None:
        return sys.modules[__name__]
    from switchgear.orchestrators.kubernetes import KubernetesOrchestrator

    cfg = scaling.kubernetes
    # each API call is bounded by timeout_s; a patch may re-read and retry on conflicts
    budget = cfg.timeout_s * (2 * cfg.conflict_retries + 3)
    return ScalePlugin(KubernetesOrchestrator(cfg), ScalePolicy(scaling), timeout_s=budget)
