"""Start-up and ``config check`` problems of the orchestrator scaling settings.

:func:`problems` names each problem with its settings key: the plugin module not enabled,
the optional extra not installed, a missing credential, an unreachable API, and a scale
target the orchestrator does not know. The gateway still starts with any of them (the
plugin reports each failed scale call); ``config check`` exits non-zero.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from switchgear.orchestrators import OrchestratorError

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
MODULES = {
    "kubernetes": "switchgear.default_plugins.k8s_scaler",
    "nomad": "switchgear.default_plugins.nomad_scaler",
}


def _credentials(kind: str, cfg: Any) -> str | None:
    if kind == "kubernetes":
        if cfg.auth == "token" and not Path(cfg.token_file).is_file():
            return f"token_file {cfg.token_file} does not exist"
        if cfg.auth == "in-cluster" and not Path(SERVICE_ACCOUNT_TOKEN).is_file():
            return f"auth in-cluster but no service-account token at {SERVICE_ACCOUNT_TOKEN}"
        if cfg.auth == "kubeconfig":
            path = Path(cfg.kubeconfig or "~/.kube/config").expanduser()
            if not path.is_file():
                return f"kubeconfig {path} does not exist"
    return None


def _orchestrator(kind: str, cfg: Any) -> Any:
    if kind == "kubernetes":
        from switchgear.orchestrators.kubernetes import KubernetesOrchestrator

        return KubernetesOrchestrator(cfg)
    from switchgear.orchestrators.nomad import NomadOrchestrator

    return NomadOrchestrator(cfg)


async def _reach(orch: Any, timeout_s: float) -> str | None:
    try:
        async with asyncio.timeout(timeout_s):
            await orch.check()
    except OrchestratorError as exc:
        return str(exc)
    except TimeoutError:
        return f"timeout: {orch.name} API did not answer within {timeout_s:g}s"
    finally:
        await orch.close()
    return None


async def problems(settings: Any, *, contact: bool = True) -> list[str]:
    """Every problem of ``settings.scaling``'s orchestrators, each naming its key."""
    out: list[str] = []
    for kind, module in MODULES.items():
        cfg = getattr(settings.scaling, kind)
        if cfg is None:
            continue
        key = f"scaling.{kind}"
        if module not in settings.plugins.modules:
            out.append(f"{key}: set, but plugins.modules does not enable {module}")
        if (bad := _credentials(kind, cfg)) is not None:
            out.append(f"{key}: {bad}")
            continue
        try:
            orch = _orchestrator(kind, cfg)
        except ModuleNotFoundError as exc:
            out.append(f"{key}: {exc}")
            continue
        if contact and (bad := await _reach(orch, cfg.timeout_s * 2)) is not None:
            out.append(f"{key}: {bad}")
    return out
