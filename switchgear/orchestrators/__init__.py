"""Scaling on the orchestrators users already run (Kubernetes, Nomad), and the signals and
the KEDA external scaler that let any autoscaler drive switchgear's models.

:mod:`.plugin` is the ``scale`` hook implementation shared by every orchestrator: leader
check, :mod:`.policy`, error handling and the decision record. :mod:`.kubernetes` and
:mod:`.nomad` talk to the APIs; the plugin modules users enable are
``switchgear.default_plugins.k8s_scaler`` and ``switchgear.default_plugins.nomad_scaler``.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """A failed orchestrator call: ``kind`` is ``unreachable``, ``denied``, ``not_found``,
    ``conflict``, ``timeout``, ``config`` or ``api``; the message says what to fix."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    def __str__(self) -> str:
        return f"{self.kind}: {super().__str__()}"
