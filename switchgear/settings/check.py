"""``switchgear config check FILE``: validate and summarise a config file."""

from __future__ import annotations

from switchgear.settings import Settings, load_settings


def check_file(path: str) -> int:
    settings = load_settings(path)
    models = sorted({b.model for b in settings.backends} | set(settings.models))
    print(f"{path}: OK")
    print(f"  listen: {settings.listen.host}:{settings.listen.port} (workers: {settings.workers})")
    print(f"  static backends: {len(settings.backends)}; models: {', '.join(models) or '-'}")
    if settings.consul is not None:
        print(
            f"  consul: {settings.consul.host}:{settings.consul.port} service={settings.consul.service}"
        )
    if settings.worker is not None:
        print(f"  worker model: {settings.worker.model.model_name_or_path}")
    return _check_scaling(settings)


def _check_scaling(settings: Settings) -> int:
    """Orchestrator scaling: credentials, reachability and targets (contacts the APIs)."""
    if settings.scaling.kubernetes is None and settings.scaling.nomad is None:
        return 0
    import asyncio

    from switchgear.orchestrators.check import problems

    found = asyncio.run(problems(settings))
    for problem in found:
        print(f"  error: {problem}")
    return 1 if found else 0
